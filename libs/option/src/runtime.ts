// How node runs each of the agent's services. Every launch uses these flags:
// npm start (package.json), the image's ENTRYPOINT (Dockerfile, and so the
// compose services), and the tests' and the bench's launches (testkit,
// bench/child-server). e2e/src/launch.test.ts checks that they all do.

/**
 * --no-memory-reducer: V8's memory reducer runs a major GC once the process
 * has allocated little for a while (an agent between bursts of calls), and
 * from then on lets the old generation grow by 1.3x at most. Under the next
 * sustained load the heap stays that small, and major GCs run back to back:
 * with 200 containers and 16 clients doing Get, 24 mark-compacts in 10 s and
 * 56 us of CPU per Get, against 8 and 48 us without the reducer (the heap's
 * live size is the same, about 25 MB; the peak is 10-20 MB more).
 */
export const NODE_FLAGS: readonly string[] = ['--no-memory-reducer'];
