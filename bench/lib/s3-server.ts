// A local S3-compatible server for the benchmark, in its own process on the load generator's core.
import S3rver from 's3rver';

const directory = process.argv[2]!;
const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: 'bench' }] });
const { port } = await server.run();
console.log(`ready ${port}`);
process.on('SIGTERM', () => {
  server.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
