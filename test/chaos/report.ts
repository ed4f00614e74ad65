// The chaos soak's summary, as `npm run soak` prints it and the CI test comments it.
import type { SoakReport } from './soak.js';

export function formatReport(r: SoakReport): string {
  const lives = r.lives.filter((l) => !l.final);
  const byKind = new Map<string, { n: number; ms: number; puts: number }>();
  for (const p of r.phases.filter((p) => p.ms > 0)) {
    const k = byKind.get(p.kind) ?? { n: 0, ms: 0, puts: 0 };
    byKind.set(p.kind, { n: k.n + 1, ms: k.ms + p.ms, puts: k.puts + p.puts });
  }
  const counts = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}: ${v}`).join(', ');
  const row = (name: string, value: string | number) => `${name.padEnd(18)}${value}`;
  const env = Object.entries(r.env).map(([k, v]) => ` --env ${k}=${v}`).join('');
  return [
    `== chaos soak: seed ${r.seed}, ${r.durationMs / 1000} s of chaos ==`,
    row('acked', `${r.audit.acked} (load ${r.acked.load}, padded ${r.acked.padded}, slow ${r.acked.slow})`),
    row('in S3', `${r.audit.inS3} events in ${r.audit.objects} objects`),
    row('in DLQ', `${r.audit.inDlq} (after the final drain)`),
    row('dropped (metric)', `${r.dropped} (dlq_events_dropped_total of every life by its signal ${r.lives.reduce((n, l) => n + l.droppedByMetric, 0)}, drop log lines during shutdowns ${r.lives.reduce((n, l) => n + l.droppedInShutdown, 0)})`),
    row('missing', r.audit.missing.length),
    row('duplicated', r.audit.duplicated.length),
    row('unexpected', `${r.audit.unexpected.length} (stored but refused)`),
    row('restarts', `${lives.length} lives, then a final drain; second signals ${lives.filter((l) => l.signals.length > 1).length}; shutdown deadline hit ${lives.filter((l) => l.summary?.uploadedInTime === false).length}x; ${lives.reduce((n, l) => n + Number(l.summary?.spilledEvents ?? 0), 0)} events spilled over the lives`),
    row('fault phases', [...byKind].map(([k, v]) => `${k} ${v.n}x ${(v.ms / 1000).toFixed(0)} s (${v.puts} PUTs)`).join(', ')),
    row('load', `${r.load.requests} requests: ${counts(r.load.outcomes)}`),
    row('padded client', `${r.padded.sent} requests: ${counts(r.padded.outcomes)}`),
    row('slow client', `${r.slow.sent} requests: ${counts(r.slow.outcomes)}`),
    ...r.notes.map((n) => row('note', n)),
    r.failures.length === 0 ? 'RESULT: PASS' : `RESULT: FAIL\n${r.failures.map((f) => `  - ${f}`).join('\n')}`,
    `replay: npm run soak -- --seconds ${r.durationMs / 1000} --seed ${r.seed}${env}`,
  ].join('\n');
}
