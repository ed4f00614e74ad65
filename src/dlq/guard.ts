// `dlq drain` never overwrites an object it did not write (docs/dlq.md, "The dlq command"). A
// DLQ directory the command is pointed at may hold files from anywhere, so before a PUT:
// - the file's key must be the one this server makes for it: `<S3_PREFIX>/YYYY/MM/DD/HH/<id>`, or
//   the OBJECT_KEY template's (its `{instance}` any instance id, its `{event.FIELD}` any key-safe
//   value), and a codec's extension,
//   where <id> is the file's name, a batch id (`<first event ms>-<instance>-...`, letters, digits,
//   `.`, `_` and `-`) that starts with the file's first event time, whose UTC hour names the path;
// - where an object is already at that key (HEAD), the file is uploaded only if that object is this
//   batch: then it is in S3 already, so the file is deleted without a PUT. Another object is left
//   alone and the file kept. "This batch": the same `event-count` metadata the server writes, and
//   the same bytes, by the CRC-32 S3 keeps (asked for with ChecksumMode) or, from a store that keeps
//   none (s3rver), an ETag equal to the MD5 of the bytes;
// - the PUT itself is conditional (If-None-Match: *), so an object written between the HEAD and
//   the PUT is not overwritten either, and nor is one the HEAD could not see (a role allowed
//   s3:PutObject only is refused the HEAD: 403, for a missing key too). S3 refuses such a PUT with
//   412; the file is kept and the reason printed.
import { createHash } from 'node:crypto';
import zlib from 'node:zlib';
import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { type KeyTemplate, renderKey } from '../config/key-template.js';
import { objectKey } from '../upload/batcher.js';
import { codecOfKey, EXTENSIONS } from '../upload/codec.js';
import { httpStatus } from '../upload/errors.js';
import { type DlqMeta, idOfName } from './file.js';

/** What a HEAD tells of the object at a key. */
export interface ObjectFacts {
  readonly eventCount: string | undefined;
  /** Base64 of the big-endian CRC-32, as S3 keeps it; undefined where the store keeps none. */
  readonly crc32: string | undefined;
  readonly etag: string | undefined;
}

/** The object at `key`, undefined if there is none; throws when that cannot be told (403, a timeout). */
export type Head = (key: string, signal?: AbortSignal) => Promise<ObjectFacts | undefined>;

/** What to do with a file: PUT it (conditionally), delete it as stored already, or keep it. */
export type Verdict = { readonly action: 'put'; readonly unseen?: string } | { readonly action: 'stored' } | { readonly action: 'keep'; readonly reason: string };

const BATCH_ID = /^[A-Za-z0-9._-]+$/;

/** Why a file's key is not the one this server makes for a batch of that name; undefined when it is. */
export function foreignKey(name: string, meta: DlqMeta, prefix: string, template?: KeyTemplate): string | undefined {
  const id = idOfName(name) ?? '';
  if (!BATCH_ID.test(id) || !id.startsWith(`${meta.firstReceivedAt}-`)) {
    return `its name is not a batch id this server makes (<first event ms>-<instance>-..., the first event at ${meta.firstReceivedAt})`;
  }
  const extension = EXTENSIONS[codecOfKey(meta.key)];
  const expected = objectKey(prefix, meta.firstReceivedAt, id, extension);
  if (meta.key === expected) return undefined;
  if (template !== undefined && keyPattern(template, prefix, meta.firstReceivedAt, id, extension).test(meta.key)) return undefined;
  return `its key is not the one this server makes for it (${expected}${template === undefined ? '' : ` or OBJECT_KEY ${template.text}`})`;
}

/** The keys `template` makes for batch `id`: its field value and instance may be any the server makes. */
function keyPattern(template: KeyTemplate, prefix: string, first: number, id: string, extension: string): RegExp {
  const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const VALUE = '\u0001';
  const INSTANCE = '\u0002';
  const key = renderKey(template, { prefix, instance: INSTANCE, batch: id, first, value: VALUE });
  const source = escape(key + extension).replaceAll(VALUE, '[A-Za-z0-9._%-]{1,100}').replaceAll(INSTANCE, '[A-Za-z0-9._-]{1,64}');
  return new RegExp(`^${source}$`);
}

export class OverwriteGuard {
  constructor(
    private readonly prefix: string,
    private readonly head: Head,
    /** OBJECT_KEY, when set: keys it makes are the server's too. */
    private readonly template?: KeyTemplate,
  ) {}

  async check(name: string, object: { readonly meta: DlqMeta; readonly body: Buffer }, signal?: AbortSignal): Promise<Verdict> {
    const foreign = foreignKey(name, object.meta, this.prefix, this.template);
    if (foreign !== undefined) return { action: 'keep', reason: `${foreign}; not uploaded` };
    let found: ObjectFacts | undefined;
    try {
      found = await this.head(object.meta.key, signal);
    } catch (err) {
      // Cannot tell: the conditional PUT decides, and says so if an object is there.
      return { action: 'put', unseen: (err as Error).message || (err as Error).name };
    }
    if (found === undefined) return { action: 'put' };
    if (isThisBatch(found, object.meta.events, object.body)) return { action: 'stored' };
    return { action: 'keep', reason: `another object is at its key (${describe(found)}, the file holds ${object.meta.events} events); not overwritten` };
  }

  /** Why S3 refused the conditional PUT, or undefined when `err` is not that refusal. */
  refusal(err: unknown, unseen: string | undefined): string | undefined {
    if (httpStatus(err) !== 412) return undefined;
    const why = unseen === undefined ? '' : ` (the HEAD that would tell was refused: ${unseen}; s3:GetObject on the prefix lets it tell)`;
    return `an object is already at its key and could not be checked to be this batch${why}; not overwritten`;
  }
}

function isThisBatch(found: ObjectFacts, events: number, body: Buffer): boolean {
  if (found.eventCount !== String(events)) return false;
  if (found.crc32 !== undefined) {
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return found.crc32 === crc.toString('base64');
  }
  return found.etag === `"${createHash('md5').update(body).digest('hex')}"`;
}

function describe(found: ObjectFacts): string {
  return `event-count ${found.eventCount ?? 'none'}, ${found.crc32 === undefined ? `ETag ${found.etag ?? 'none'}` : `CRC-32 ${found.crc32}`}`;
}

/** A Head on `bucket`: the object's metadata and checksum, each HEAD cut at `timeoutMs`. */
export function headObject(client: S3Client, bucket: string, timeoutMs: number): Head {
  return async (key, signal) => {
    const timeout = AbortSignal.timeout(timeoutMs);
    try {
      const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key, ChecksumMode: 'ENABLED' }), { abortSignal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]) });
      return { eventCount: head.Metadata?.['event-count'], crc32: head.ChecksumCRC32, etag: head.ETag };
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw err;
    }
  };
}
