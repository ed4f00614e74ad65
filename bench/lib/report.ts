// Writes a run's results: <timestamp>.json, a Markdown summary, and an SVG chart of events/s and
// p99 per scenario, the server beside its baselines, into the ignored .bench/results/; with --save
// into bench/results/ instead, refreshing latest.svg and bench/README.md.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { Figures } from './measure.js';
import type { ProfileResult } from './profile-run.js';
import { stageTable } from './profile.js';
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
    '| scenario | target | 2xx req/s | 2xx events/s | ratio to parse-only | end-to-end events/s | end-to-end ratio | drain s | 503 share | p50 ms | p99 ms | p99.9 ms | CPU s per M events | S3 bytes per event | posted / stored bytes | peak RSS MiB | event-loop p99 ms |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const row = (title: string, target: string, x: Figures, ratio: string, e2eRatio: string) =>
    `| ${title} | ${target} | ${f(x.rps)} | ${f(x.eventsPerSec)} | ${ratio} | ${maybe(x.e2eEventsPerSec)} | ${e2eRatio} | ${maybe(x.drainSeconds, 1)} | ${maybe(x.share503 * 100, 1)}% | ${maybe(x.latency?.p50, 2)} | ${maybe(x.latency?.p99, 2)} | ${maybe(x.latency?.p999, 2)} | ${maybe(x.cpuSecondsPerMillionEvents, 1)} | ${maybe(x.s3BytesPerEvent, 1)} | ${maybe(x.postedToStored, 1)} | ${maybe(x.peakRssMiB)} | ${maybe(x.eventLoopP99Ms, 1)} |`;
  for (const r of run.results) {
    if (r.comparison) {
      const { targets, outside, ratios } = r.comparison;
      lines.push(row(r.title, 'no-op', targets.noop, maybe(1 / ratios.parseToNoop, 2), maybe(1 / ratios.parseToNoop, 2)));
      lines.push(row('', 'parse-only', targets.parse, '1.00', '1.00'));
      lines.push(row('', '**server**', targets.server, `**${maybe(ratios.serverToParse, 2)}**`, `**${maybe(ratios.e2eServerToParse, 2)}**`));
      for (const [url, x] of Object.entries(outside)) lines.push(row('', url, x, maybe(x.eventsPerSec / targets.parse.eventsPerSec, 2), ''));
    } else if (r.variants) {
      const [first, ...rest] = Object.keys(r.variants.variants);
      lines.push(row(r.title, `**server** ${first}`, r.variants.variants[first!]!, `1.00 (the reference)`, '1.00'));
      for (const name of rest) lines.push(row('', `**server** ${name}`, r.variants.variants[name]!, `**${maybe(r.variants.ratios[name], 2)}** of ${first}`, `**${maybe(r.variants.e2eRatios[name], 2)}**`));
    } else if (r.server) {
      lines.push(row(r.title, '**server**', r.server, '', ''));
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

export interface ProfileRun {
  readonly startedAt: string;
  readonly machine: Record<string, string | number>;
  readonly settings: Record<string, string | number>;
  readonly profiles: readonly ProfileResult[];
}

/** `npm run bench -- --profile`: the conditions, the method, and a table per request shape. */
export function profileMarkdown(run: ProfileRun): string {
  const s = run.settings;
  const lines = [
    `Profile of ${run.startedAt} on ${run.machine.cpus}x ${run.machine.cpu}, Node ${run.machine.node}; ${s.generator}, ${s.pinning}; ${s.seconds} s of load from ${s.connections} connections, then its drain; server settings: ${s.serverEnv}, WORKERS=1; load average at the end ${s.loadavg}.`,
    '',
    'Method: `node --cpu-prof` on the server (its main thread, sampled every 1 ms), after a 2 s warm-up load outside the window. Each sample goes to the stage of the innermost frame on its stack that has one (Node and V8 built-ins count for their caller). A busy stage\'s CPU is its samples\' time less the share of the main thread\'s run-queue wait (/proc schedstat) in it; "event-loop poll" is the rest of the main thread\'s CPU, which ran under samples V8 marks idle (uWS\'s C++ and the kernel); the other threads by name (/proc/<pid>/task/*/comm): libuv\'s pool (gzip runs there), V8\'s helpers, the profiler\'s own (left out of the total). Per event: over the events accepted in the window, all stored in S3 by its end. See bench/README.md, "The profile".',
  ];
  for (const p of run.profiles) {
    lines.push(
      '',
      `**${p.shape}**: ${p.events.toLocaleString('en-US')} events in ${p.windowSeconds.toFixed(1)} s (${Math.round(p.eventsPerSec).toLocaleString('en-US')} events/s end to end, ${(p.share503 * 100).toFixed(1)}% of requests answered other than 2xx); ${p.samples.toLocaleString('en-US')} samples${p.windowed ? '' : ' (the whole profile: the window did not overlap it)'}; main thread CPU ${p.cpu.mainThreadSeconds.toFixed(2)} s (and ${p.cpu.mainThreadWaitSeconds.toFixed(2)} s waiting for the core), thread pool ${p.cpu.threads.pool.toFixed(2)} s.`,
      '',
      stageTable(p.rows).trimEnd(),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** A profile's JSON and Markdown, into the ignored .bench/results/. */
export function writeProfile(run: ProfileRun, md: string): { md: string; files: string[] } {
  const dir = join(REPO, '.bench', 'results');
  mkdirSync(dir, { recursive: true });
  const stamp = `${run.startedAt.replace(/[:.]/g, '-')}-profile`;
  const files = [join(dir, `${stamp}.json`), join(dir, `${stamp}.md`)];
  writeFileSync(files[0]!, `${JSON.stringify(run, null, 2)}\n`);
  writeFileSync(files[1]!, md);
  return { md, files: files.map((file) => relative(REPO, file)) };
}
