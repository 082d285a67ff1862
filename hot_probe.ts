import { startDynamoDBLocal } from "./src/local/mod.ts";
import { runHotBench } from "./scripts/bench_hot.ts";
const ddb = await startDynamoDBLocal({ javaOptions: [] });
try {
  const off = await runHotBench({ endpoint: ddb.endpoint, seconds: 4, batches: false });
  console.log("off", off.admittedPerSecond.toFixed(0), off.writeCallsPerAdmitted.toFixed(2));
  const on = await runHotBench({ endpoint: ddb.endpoint, seconds: 4, batches: true });
  console.log("on", on.admittedPerSecond.toFixed(0), on.writeCallsPerAdmitted.toFixed(2), JSON.stringify(on.errorsReachingCallers));
} finally { await ddb.stop(); }
