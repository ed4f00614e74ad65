// Writes a run's results: <timestamp>.json, a Markdown summary, and an SVG chart of events/s and
// p99 per scenario, the server beside its baselines, into the ignored .bench/results/; with --save
// into bench/results/ instead, refreshing latest.svg and bench/README.md.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { Figures } from './measure.js';
import type { Result } from './scenario.js';
import { REPO } from './stack.js';

export interface Run {
  readonly startedAt: string;
  readonly machine: Record<string, string | number>;
  readonly settings: Record<string, string | number>;
  readonly results: readonly Result[];
}

const f = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
/** An empty cell for what was not measured (or a ratio to nothing): never a 0 that was not seen. */
const maybe = (n: number | undefined, digits = 0) => (n === undefined || !Number.isFinite(n) ? '' : f(n, digits));

export function markdown(run: Run): string {
  const lines = [
    `Run of ${run.startedAt} on ${run.machine.cpus}x ${run.machine.cpu}, Node ${run.machine.node}, ${run.machine.engine} uWebSockets.js; ${run.settings.generator}, ${run.settings.pinning}; ${run.settings.seconds} s runs, ${run.settings.rounds} alternating rounds, ${run.settings.connections} connections; server settings: ${run.settings.serverEnv}${run.settings.targets === undefined ? '' : `; other targets: ${run.settings.targets}`}.`,
    '',
    '| scenario | target | 2xx req/s | events/s | ratio to parse-only | p50 ms | p99 ms | p99.9 ms | CPU s per M events | S3 bytes per event | compression ratio | peak RSS MiB | event-loop p99 ms | non-2xx |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const row = (title: string, target: string, x: Figures, ratio: string) =>
    `| ${title} | ${target} | ${f(x.rps)} | ${f(x.eventsPerSec)} | ${ratio} | ${maybe(x.latency?.p50, 2)} | ${maybe(x.latency?.p99, 2)} | ${maybe(x.latency?.p999, 2)} | ${maybe(x.cpuSecondsPerMillionEvents, 1)} | ${maybe(x.s3BytesPerEvent, 1)} | ${maybe(x.compressionRatio, 1)} | ${maybe(x.peakRssMiB)} | ${maybe(x.eventLoopP99Ms, 1)} | ${f(x.non2xx)} |`;
  for (const r of run.results) {
    if (r.comparison) {
      const { targets, outside, ratios } = r.comparison;
      lines.push(row(r.title, 'no-op', targets.noop, maybe(1 / ratios.parseToNoop, 2)));
      lines.push(row('', 'parse-only', targets.parse, '1.00'));
      lines.push(row('', '**server**', targets.server, `**${maybe(ratios.serverToParse, 2)}**`));
      for (const [url, x] of Object.entries(outside)) lines.push(row('', url, x, maybe(x.eventsPerSec / targets.parse.eventsPerSec, 2)));
    } else if (r.variants) {
      const [first, ...rest] = Object.keys(r.variants.variants);
      lines.push(row(r.title, `**server** ${first}`, r.variants.variants[first!]!, `1.00 (the reference)`));
      for (const name of rest) lines.push(row('', `**server** ${name}`, r.variants.variants[name]!, `**${maybe(r.variants.ratios[name], 2)}** of ${first}`));
    } else if (r.server) {
      lines.push(row(r.title, '**server**', r.server, ''));
    }
  }
  lines.push('', '| scenario | accepted | in S3 | via the DLQ | dropped | zero loss | notes |', '|---|---:|---:|---:|---:|---|---|');
  for (const r of run.results) {
    const s = r.settled;
    lines.push(`| ${r.title} | ${f(s.accepted)} | ${f(s.stored)} | ${f(s.spilled)} | ${f(s.dropped)} | ${s.lossless ? 'yes' : '**NO**'} | ${r.notes.join('; ')} |`);
  }
  return `${lines.join('\n')}\n`;
}

/** Two panels per scenario, targets side by side: events/s (log scale: the no-op baseline parses
 * nothing and is 10x the rest) and p99 latency (linear; left out where a run did not measure it). */
export function svg(run: Run): string {
  type Bar = { group: string; target: string; name: string; events: number; p99: number };
  const bars: Bar[] = [];
  for (const r of run.results) {
    const group = `S${r.title.split('.')[0]!}`;
    if (r.comparison) {
      for (const [target, x] of Object.entries(r.comparison.targets)) bars.push({ group, target, name: target, events: x.eventsPerSec, p99: x.latency?.p99 ?? 0 });
      for (const [url, x] of Object.entries(r.comparison.outside)) bars.push({ group, target: 'outside', name: url, events: x.eventsPerSec, p99: x.latency?.p99 ?? 0 });
    } else if (r.variants) {
      for (const [name, x] of Object.entries(r.variants.variants)) bars.push({ group, target: 'server', name: `server, ${name}`, events: x.eventsPerSec, p99: x.latency?.p99 ?? 0 });
    } else if (r.server) bars.push({ group, target: 'server', name: 'server', events: r.server.eventsPerSec, p99: r.server.latency?.p99 ?? 0 });
  }
  const colors: Record<string, string> = { noop: '#b0b0b0', parse: '#6b8fbf', server: '#d9822b' };
  if (bars.some((b) => b.target === 'outside')) colors.outside = '#5a9e5a';
  const groups = [...new Set(bars.map((b) => b.group))];
  // At least wide enough for the legend and the note beside it.
  const width = Math.max(60 + bars.length * 26 + groups.length * 20, 640);
  const panel = (title: string, top: number, value: (b: Bar) => number, scale: (v: number, max: number) => number) => {
    const max = Math.max(...bars.map(value), 1);
    const out = [`<text x="10" y="${top - 8}" font-size="13" font-weight="bold">${title}</text>`];
    let x = 50;
    for (const group of groups) {
      x += 20;
      const members = bars.filter((b) => b.group === group);
      out.push(`<text x="${x + (members.length * 26) / 2 - 2}" y="${top + 172}" font-size="11" text-anchor="middle">${group}</text>`);
      for (const b of members) {
        const v = value(b);
        if (v > 0) {
          const h = scale(v, max) * 150;
          const label = v >= 1000 ? `${f(v / 1000, 0)}k` : f(v, 1);
          out.push(`<rect x="${x}" y="${top + 155 - h}" width="22" height="${h}" fill="${colors[b.target]}"><title>${b.name.replace(/&/g, '&amp;').replace(/</g, '&lt;')}: ${f(v, 1)}</title></rect>`);
          out.push(`<text x="${x + 11}" y="${top + 152 - h}" font-size="8" text-anchor="middle">${label}</text>`);
        }
        x += 26;
      }
    }
    out.push(`<line x1="50" y1="${top + 155}" x2="${width}" y2="${top + 155}" stroke="#333"/>`);
    return out.join('\n');
  };
  const legend = Object.entries(colors)
    .map(([name, color], i) => `<rect x="${10 + i * 110}" y="418" width="12" height="12" fill="${color}"/><text x="${26 + i * 110}" y="428" font-size="11">${{ noop: 'no-op', parse: 'parse-only', server: 'server', outside: '--target' }[name]}</text>`)
    .join('\n');
  const log = (v: number, max: number) => Math.log10(Math.max(v, 1)) / Math.log10(max);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width + 20}" height="440" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
${panel('Events accepted per second, one core (log scale)', 30, (b) => b.events, log)}
${panel('p99 latency, ms', 230, (b) => b.p99, (v, max) => v / max)}
${legend}
<text x="${width - 10}" y="428" font-size="10" text-anchor="end">S1-S10: the scenarios in bench/README.md</text>
</svg>
`;
}

/** Without `save`, nothing under version control changes: a quick run leaves `git status` clean. */
export function write(run: Run, save: boolean): { md: string; files: string[] } {
  const dir = join(REPO, save ? 'bench' : '.bench', 'results');
  mkdirSync(dir, { recursive: true });
  const stamp = run.startedAt.replace(/[:.]/g, '-');
  const md = markdown(run);
  const files = [join(dir, `${stamp}.json`), join(dir, `${stamp}.md`), join(dir, `${stamp}.svg`)];
  writeFileSync(files[0]!, `${JSON.stringify(run, null, 2)}\n`);
  writeFileSync(files[1]!, md);
  writeFileSync(files[2]!, svg(run));
  if (!save) return { md, files: files.map((file) => relative(REPO, file)) };
  files.push(join(dir, 'latest.svg'));
  writeFileSync(files[3]!, svg(run));
  const readme = join(REPO, 'bench', 'README.md');
  files.push(readme);
  const text = readFileSync(readme, 'utf8');
  const start = '<!-- results:start -->';
  const end = '<!-- results:end -->';
  if (text.includes(start)) {
    const updated = `${text.slice(0, text.indexOf(start) + start.length)}\n${md}\n![events/s and p99 per scenario](results/latest.svg)\n\nRaw figures: [results/${stamp}.json](results/${stamp}.json)\n${text.slice(text.indexOf(end))}`;
    writeFileSync(readme, updated);
  }
  return { md, files: files.map((file) => relative(REPO, file)) };
}
