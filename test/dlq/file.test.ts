// The DLQ file format (RFC 1952 gzip with the metadata in an "EI" extra subfield): what encodeFile
// writes, that any gzip reader still reads it, that the object first PUT comes back byte for byte,
// and that decodeMeta and verifiedObject refuse each kind of damage with a CorruptFile saying which.
import { gunzipSync, gzipSync } from 'node:zlib';
import zlib from 'node:zlib';
import t, { type Test } from 'tap';
import { CorruptFile, decodeMeta, encodeFile, fileName, headerBytes, idOfName, isQueuedName, spillFile, verifiedObject } from '../../src/dlq/file.js';
import { dlqFileWithMeta } from '../helpers/dlq.js';

const LINES = '{"received_at":1,"event":{"a":1}}\n{"received_at":2,"event":{"b":2}}\n{"received_at":3,"event":{"c":3}}\n';
const META = { key: 'raw/2027/01/15/08/x.jsonl.gz', events: 3, firstReceivedAt: 1, lastReceivedAt: 3, spilledAt: 99 };

// A CorruptFile's message (tap's throws/rejects do not tell this bare Error subclass from an Error).
function refusal(t: Test, decode: () => unknown, name: string): string | undefined {
  try {
    decode();
  } catch (err) {
    t.type(err, CorruptFile, name);
    return (err as Error).message;
  }
  t.fail(`${name}: not refused`);
  return undefined;
}

async function asyncRefusal(t: Test, verify: Promise<unknown>, name: string): Promise<string | undefined> {
  const err = await verify.then(() => undefined, (e: unknown) => e);
  t.type(err, CorruptFile, name);
  return (err as Error | undefined)?.message;
}

/** A copy of `file` with `change` applied. */
const altered = (file: Buffer, change: (copy: Buffer) => void): Buffer => {
  const copy = Buffer.from(file);
  change(copy);
  return copy;
};

t.test('encodeFile: a gzip file any reader inflates to the lines, with the metadata and the object\'s CRC-32 in an "EI" extra field', async (t) => {
  const gzip = gzipSync(LINES);
  const file = encodeFile(gzip, META);
  t.equal(gunzipSync(file).toString(), LINES, 'zcat prints the JSON lines');
  t.equal(file[3], 0x04, 'FLG is FEXTRA alone');
  t.ok(file.subarray(4, 10).equals(gzip.subarray(4, 10)), 'MTIME, XFL and OS as zlib wrote them');
  const xlen = file.readUInt16LE(10);
  t.equal(file.subarray(12, 14).toString(), 'EI');
  const json = file.subarray(16, 16 + file.readUInt16LE(14)).toString();
  t.equal(xlen, 4 + Buffer.byteLength(json), 'one subfield fills the extra field');
  t.same(JSON.parse(json), { v: 1, ...META, crc32: zlib.crc32(gzip) });
  t.same(decodeMeta(file), { meta: { v: 1, ...META, crc32: zlib.crc32(gzip) }, bodyOffset: 12 + xlen });
});

t.test('verifiedObject gives back the gzip object exactly as first PUT, and its metadata', async (t) => {
  const gzip = gzipSync(LINES);
  const { meta, body: object } = await verifiedObject(encodeFile(gzip, META));
  t.ok(object.equals(gzip), 'byte for byte, so S3 can verify the same checksum');
  t.equal(meta.key, META.key);
  t.equal(meta.events, 3);
  const empty = await verifiedObject(encodeFile(gzipSync(''), { ...META, events: 0 }));
  t.equal(empty.meta.events, 0, 'an empty batch is a valid file');
});

t.test('decodeMeta needs only the head: the fixed header and the extra field', async (t) => {
  const file = encodeFile(gzipSync(LINES), META);
  const bodyOffset = 12 + file.readUInt16LE(10);
  t.equal(decodeMeta(file.subarray(0, bodyOffset)).meta.spilledAt, 99);
  t.equal(refusal(t, () => decodeMeta(file.subarray(0, bodyOffset - 1)), 'one byte short'), 'truncated or foreign gzip extra field');
});

t.test('encodeFile takes only a gzip member with a bare header', async (t) => {
  t.throws(() => encodeFile(Buffer.from('{"not":"gzip"}\n'), META), { message: 'expected a gzip member with no header flags' });
  const encoded = encodeFile(gzipSync(LINES), META);
  t.throws(() => encodeFile(encoded, META), { message: 'expected a gzip member with no header flags' }, 'a DLQ file is not wrapped twice');
});

t.test('decodeMeta refuses a head that is no DLQ file, or whose extra field is cut short or foreign', async (t) => {
  const file = encodeFile(gzipSync(LINES), META);
  const notDlq = 'not a DLQ gzip file (no extra header field)';
  const foreign = 'truncated or foreign gzip extra field';
  t.equal(refusal(t, () => decodeMeta(Buffer.from('hello, not gzip at all')), 'not gzip'), notDlq);
  t.equal(refusal(t, () => decodeMeta(gzipSync(LINES)), 'a plain gzip file, no FEXTRA'), notDlq);
  t.equal(refusal(t, () => decodeMeta(file.subarray(0, 11)), 'shorter than the header and XLEN'), notDlq);
  t.equal(refusal(t, () => decodeMeta(altered(file, (c) => c.write('XY', 12))), 'another subfield id'), foreign);
  t.equal(refusal(t, () => decodeMeta(altered(file, (c) => c.writeUInt16LE(2, 10))), 'XLEN too small for a subfield header'), foreign);
  t.equal(refusal(t, () => decodeMeta(altered(file, (c) => c.writeUInt16LE(c.readUInt16LE(14) + 1, 14))), 'a subfield that runs past the extra field into the compressed bytes'), foreign);
});

t.test('decodeMeta refuses metadata that does not parse or lacks a field of the right type', async (t) => {
  const shape = 'metadata lacks a field or has a wrong type';
  const good = { v: 1, key: 'raw/a', events: 1, firstReceivedAt: 1, lastReceivedAt: 1, spilledAt: 1, crc32: 1 };
  t.equal(decodeMeta(dlqFileWithMeta(JSON.stringify(good))).meta.key, 'raw/a', 'the baseline passes');
  t.equal(refusal(t, () => decodeMeta(dlqFileWithMeta('{"v":1,"key":')), 'cut JSON'), 'unreadable metadata in the gzip extra field');
  for (const bad of [{ v: 2 }, { key: '' }, { key: 7 }, { events: 1.5 }, { events: -1 }, { crc32: '1' }, { spilledAt: undefined }, { firstReceivedAt: 2 ** 53 }]) {
    t.equal(refusal(t, () => decodeMeta(dlqFileWithMeta(JSON.stringify({ ...good, ...bad }))), JSON.stringify(bad)), shape);
  }
});

t.test('verifiedObject refuses a changed body, a damaged stream and a wrong line count, each saying which', async (t) => {
  const gzip = gzipSync(LINES);
  const file = encodeFile(gzip, META);
  t.equal(await asyncRefusal(t, verifiedObject(altered(file, (c) => (c[c.length - 12]! ^= 0xff))), 'a flipped byte'), 'checksum mismatch: the file changed after it was written');
  // Cut before it was encoded, so the stored CRC-32 matches: only inflating it shows the damage.
  t.match(await asyncRefusal(t, verifiedObject(encodeFile(gzip.subarray(0, gzip.length - 8), META)), 'a cut stream'), /^gzip stream is damaged: /);
  t.equal(await asyncRefusal(t, verifiedObject(encodeFile(gzip, { ...META, events: 2 })), 'a wrong count'), 'holds 3 lines, its header says 2 events');
  t.equal(await asyncRefusal(t, verifiedObject(Buffer.from('not a DLQ file')), 'not a DLQ file'), 'not a DLQ gzip file (no extra header field)');
});

t.test('spillFile by the key\'s codec: zstd keeps the object after a skippable frame (zstdcat reads it), none keeps the lines gzipped; both come back byte for byte', async (t) => {
  const zstd = zlib.zstdCompressSync(LINES);
  const zMeta = { ...META, key: 'raw/2027/01/15/08/x.jsonl.zst' };
  const zFile = await spillFile(zstd, zMeta);
  // RFC 8878 3.1.2: a skippable frame (magic 0x184D2A50 to 5F, u32 LE size, that many bytes), which
  // zstd readers (zstdcat) pass over; after it, the object as PUT.
  t.equal(zFile.readUInt32LE(0) & 0xfffffff0, 0x184d2a50, 'a skippable frame\'s magic');
  t.equal(8 + zFile.readUInt32LE(4), decodeMeta(zFile).bodyOffset, 'its size field spans the metadata');
  t.strictSame(zlib.zstdDecompressSync(zFile.subarray(decodeMeta(zFile).bodyOffset)).toString(), LINES, 'then the zstd object');
  t.equal(headerBytes(zFile.subarray(0, 12)), decodeMeta(zFile).bodyOffset, 'the scan reads exactly the header');
  t.match(decodeMeta(zFile).meta, { v: 1, key: zMeta.key, events: 3, crc32: zlib.crc32(zstd) });
  t.ok((await verifiedObject(zFile)).body.equals(zstd), 'the zstd object as first PUT');
  t.equal(await asyncRefusal(t, verifiedObject(altered(zFile, (c) => (c[c.length - 3]! ^= 0xff))), 'a flipped byte'), 'checksum mismatch: the file changed after it was written');

  const plain = Buffer.from(LINES);
  const pMeta = { ...META, key: 'raw/2027/01/15/08/x.jsonl' };
  const pFile = await spillFile(plain, pMeta);
  t.equal(gunzipSync(pFile).toString(), LINES, 'zcat shows the lines');
  t.match(decodeMeta(pFile).meta, { key: pMeta.key, crc32: zlib.crc32(plain) });
  t.ok((await verifiedObject(pFile)).body.equals(plain), 'the plain object as first PUT');

  t.ok((await verifiedObject(await spillFile(gzipSync(LINES), META))).body.equals(gzipSync(LINES)), 'gzip: the file format of before');
  // A metadata frame naming a gzip key, before a zstd object: the codec must agree with the key.
  const json = Buffer.from(JSON.stringify({ v: 1, ...META, crc32: zlib.crc32(zstd) }));
  const frame = Buffer.alloc(8);
  frame.writeUInt32LE(0x184d2a5e, 0);
  frame.writeUInt32LE(json.length, 4);
  const asGzipKey = Buffer.concat([frame, json, zstd]);
  t.equal(await asyncRefusal(t, verifiedObject(asGzipKey), 'a zstd file whose key names gzip'), 'a zstd file for a key whose extension says gzip');
});

t.test('file names: a zstd object\'s file is .jsonl.zst, the others .jsonl.gz; the id is read back from either', async (t) => {
  t.equal(fileName('id-1', 'raw/a/id-1.jsonl.zst'), 'id-1.jsonl.zst');
  t.equal(fileName('id-1', 'raw/a/id-1.jsonl'), 'id-1.jsonl.gz');
  t.equal(fileName('id-1', 'raw/a/id-1.jsonl.gz'), 'id-1.jsonl.gz');
  t.equal(idOfName('id-1.jsonl.zst'), 'id-1');
  t.equal(idOfName('id-1.jsonl.gz'), 'id-1');
  t.equal(idOfName('id-1.jsonl'), undefined);
  t.ok(isQueuedName('a.jsonl.zst') && isQueuedName('a.jsonl.gz') && !isQueuedName('a.jsonl'));
});
