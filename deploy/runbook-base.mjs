// Sets the one base URL that every alert's runbook link starts with (Prometheus runbook_url,
// CloudWatch AlarmDescription), so links open from Alertmanager, Grafana and SNS mails.
//   node deploy/runbook-base.mjs                  prints the current base
//   node deploy/runbook-base.mjs <url>            rewrites every link to start with <url> (less a trailing slash)
// <url> is where docs/operations.md is published, e.g. your repository's
// https://github.com/<org>/event-ingest/blob/main/docs/operations.md; anchors are appended to it.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const DEPLOY = fileURLToPath(new URL('.', import.meta.url));
const FILES = ['prometheus/alerts.yml', 'prometheus/alerts.test.yml', 'cloudwatch/alarms.json'];

// The base the links use now: what precedes the anchor in alerts.yml's first runbook_url.
const current = /runbook_url: (\S+)#/.exec(readFileSync(`${DEPLOY}prometheus/alerts.yml`, 'utf8'))?.[1];
if (current === undefined) throw new Error('deploy/prometheus/alerts.yml has no runbook_url');
// A trailing slash (as a copied address often has) would put it before every anchor: dropped.
const base = process.argv[2]?.replace(/\/+$/, '');
if (base === undefined) {
  process.stdout.write(`${current}\n`);
} else {
  if (!/^https?:\/\/[^\s#"]+$/.test(base)) {
    process.stderr.write(`Expected an absolute http(s) URL without an anchor, got \`${base}\`\n`);
    process.exit(1);
  }
  for (const file of FILES) {
    const path = DEPLOY + file;
    writeFileSync(path, readFileSync(path, 'utf8').replaceAll(`${current}#`, `${base}#`));
  }
}
