// The internal service of the pipe bench as a process of its own (pipe-bench.ts).
import { servePipeBench } from './pipe-bench';

void servePipeBench();
