// Local mode (README, "Local mode and production"): with no S3_BUCKET, an embedded S3-compatible server (s3rver) on loopback.
// s3rver is a dev dependency, so a production install (npm ci --omit=dev) cannot start this way.

export const LOCAL_BUCKET = 'events';
// s3rver's fixed credentials.
export const LOCAL_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface LocalS3 {
  readonly endpoint: string;
  close(): Promise<void>;
}

export class LocalModeUnavailable extends Error {}

export async function startLocalS3(directory: string): Promise<LocalS3> {
  let S3rver: typeof import('s3rver').default;
  try {
    S3rver = (await import('s3rver')).default;
  } catch {
    throw new LocalModeUnavailable(
      'S3_BUCKET is not set, and local mode needs the dev dependency s3rver, which is not installed (a production install): set S3_BUCKET',
    );
  }
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: LOCAL_BUCKET }] });
  const { port } = await server.run();
  return { endpoint: `http://127.0.0.1:${port}`, close: () => server.close() };
}
