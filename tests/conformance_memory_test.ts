import { RateLimiter } from "../mod.ts";
import { InMemoryBackend } from "../src/testing/mod.ts";
import { conformance } from "./_conformance.ts";

Deno.test("conformance: in-memory testing backend", async (t) => {
  const backend = new InMemoryBackend();
  await conformance(
    t,
    (clock, options) => new RateLimiter({ tableName: "in-memory", backend, clock, ...options }),
  );
});
