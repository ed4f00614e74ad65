// Types of scripts/uws-glibc-compat.mjs, for the tests.
export const UWS_VERSION: string;
export const KNOWN_BINARIES: Record<string, { readonly published: string; readonly patched: string }>;
export const GLIBC_NATIVE: readonly [number, number];
export class CompatError extends Error {}
export function sha256(bytes: Uint8Array): string;
export function runtimeGlibc(): [number, number] | undefined;
export function compatNeeded(glibc: readonly [number, number] | undefined): boolean;
export function rebindC23Imports(elf: Buffer): Buffer;
export function compatFile(path: string): 'patched' | 'already-patched' | 'not-listed';
export function binariesFor(packageDir: string, platform?: string, arch?: string): string[];
