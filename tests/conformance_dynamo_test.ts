import { RateLimiter } from "../mod.ts";
import { conformance } from "./_conformance.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

Deno.test({
  name: "conformance: DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const tableName = uniqueTableName("conformance");
    try {
      await new RateLimiter({ tableName, client }).createTable();
      await conformance(
        t,
        (clock, options) =>
          new RateLimiter({ tableName, client, clock, timeoutMs: 10_000, ...options }),
      );
    } finally {
      client.destroy();
      await ddb.stop();
    }
  },
});
