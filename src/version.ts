// The version operators see in --version, the start-up lines and ingest_build_info: package.json's,
// which the image carries beside dist/ (Dockerfile).
import { readFileSync } from 'node:fs';

export const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
