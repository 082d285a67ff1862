// Concurrency limits as data: stored limits and the limits file (parse, export, refusals).
import assert from "node:assert/strict";
import { Limit, ValidationError } from "../mod.ts";
import { createTestLimiter } from "../src/testing/mod.ts";
import { limitsAttr, parseLimits } from "../src/limit_items.ts";
import { LimitsFileError } from "../src/limits_file/model.ts";
import { parseLimitsFile } from "../src/limits_file/parse.ts";
import { stateToYaml } from "../src/limits_file/export.ts";

const streams = Limit.concurrent("streams", 4);

Deno.test("concurrent limits: stored limits and the limits file", () => {
  const [back] = parseLimits({ limits: limitsAttr([streams]) });
  assert.ok(back.equals(streams) && back.concurrent);
  const text = `version: 1
resources:
  llm:
    limits:
      - { name: streams, concurrent: 5 }
      - { name: rpm, rate: 100, per: minute }
`;
  const file = parseLimitsFile(text);
  const limits = file.resources.get("llm")!;
  assert.ok(limits[0].equals(Limit.concurrent("streams", 5)));
  const yaml = stateToYaml({ system: [], resources: file.resources, entities: new Map() });
  assert.match(yaml, /- \{ name: streams, concurrent: 5 \}/);
  assert.ok(parseLimitsFile(yaml).resources.get("llm")![0].equals(limits[0]));
  for (const bad of ["{ name: s, concurrent: 0 }", "{ name: s, concurrent: 2, soft: true }"]) {
    assert.throws(
      () => parseLimitsFile(`version: 1\nsystem:\n  limits:\n    - ${bad}\n`),
      (e: unknown) => e instanceof LimitsFileError && /concurrent|soft/.test(e.message),
    );
  }
});

Deno.test("a concurrent limit is never split over shards, by hand or by automatic doubling", async () => {
  const limiter = createTestLimiter();
  await limiter.createEntity({ entityId: "key-1" });
  await assert.rejects(
    limiter.setLimits({
      entityId: "key-1",
      resource: "gpt-4",
      limits: [Limit.concurrent("streams", 8)],
      shards: 2,
    }),
    (err: unknown) =>
      err instanceof ValidationError && err.field === "shards" &&
      /concurrent limit/.test(err.message),
  );
  await limiter.close();
});
