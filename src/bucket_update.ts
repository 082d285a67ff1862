/**
 * The UpdateItem of a bucket write: its condition and update expressions, built from the write's
 * limit operations (see docs/design.md, "Write paths").
 *
 * @module
 */

import type { AttributeValue, Update } from "@aws-sdk/client-dynamodb";
import * as keys from "./keys.ts";
import type { KeySpace } from "./keyspace.ts";
import type { BucketWrite, LimitOp } from "./bucket_items.ts";

const WC = keys.WRITES;

/** An attribute name that can stand in an expression as it is (never a reserved word). */
const BARE_NAME = /^[A-Za-z][A-Za-z0-9]*_[A-Za-z0-9_]*$/;

/** Builds the UpdateItem input of a bucket write on `tableName`, keys from `keySpace`. */
export function bucketUpdate(
  w: BucketWrite,
  tableName: string,
  keySpace: KeySpace,
): Update & { ReturnValuesOnConditionCheckFailure: "ALL_OLD" } {
  const names: Record<string, string> = {};
  const values: Record<string, AttributeValue> = {};
  // `ts`, `wc` and `rq` are no reserved words: they stand bare (a smaller request).
  const sets: string[] = [`${keys.WRITTEN_AT} = :ts`];
  const adds: string[] = [];
  const conds: string[] = [];
  const removes: string[] = [];
  values[":ts"] = num(w.nowMs);
  // Names with an underscore and only letters, digits and underscores are never reserved words:
  // they go in the expression as they are (a smaller request); others get a placeholder.
  let placeholders = 0;
  const ref = (name: string): string => {
    if (BARE_NAME.test(name)) return name;
    const p = `#a${placeholders++}`;
    names[p] = name;
    return p;
  };
  // Exactly once: no receipt of this operation yet (a resent or late copy finds one), and the
  // item has not passed the operation's write-count bound (past it, the receipt may be gone).
  const receipt = ref(keys.receiptAttr(w.opId));
  values[":wb"] = num(w.maxWrites);
  values[":one"] = { N: "1" };
  let rcpt = ":wb";
  if (w.cancel) {
    values[":rcpt"] = num(-w.maxWrites);
    rcpt = ":rcpt";
  }
  conds.push(
    `attribute_not_exists(${receipt})`,
    // An item the writer knows exists has a write count (should it have expired since, the
    // failure returns no item and the writer plans again without this shortcut).
    w.itemExists ? `${WC} < :wb` : `(attribute_not_exists(${WC}) OR ${WC} < :wb)`,
  );
  sets.push(`${receipt} = ${rcpt}`);
  adds.push(`${WC} :one`);
  for (const id of w.sweep ?? []) removes.push(ref(keys.receiptAttr(id)));
  w.ops.forEach((op, i) => {
    if (op.kind === "slotTake" || op.kind === "slotFree") {
      slotExpression(op, i, ref, values, conds, sets, adds, removes);
      return;
    }
    if (op.kind === "credit") {
      // Paid by the credit: the tat is left alone (see docs/design.md, "Credit").
      const c = ref(keys.attr.credit(op.name));
      values[`:c${i}`] = num(op.min);
      conds.push(`${c} >= :c${i}`);
      if (op.take > 0n) {
        values[`:v${i}`] = num(op.take);
        sets.push(`${c} = ${c} - :v${i}`);
      }
      return;
    }
    const t = ref(keys.attr.tat(op.name));
    const k = ref(keys.attr.spec(op.name));
    values[`:k${i}`] = { S: op.key };
    if (op.kind === "quota" || op.kind === "quotaSub") {
      quotaExpression(op, i, t, k, ref(keys.attr.window(op.name)), values, conds, sets);
      return;
    }
    switch (op.kind) {
      case "fromNow":
        values[`:n${i}`] = num(op.n);
        values[`:v${i}`] = num(op.newTat);
        if (op.known) {
          // Stricter than the general form, and `k_n` already holds `:k`: a shorter write.
          conds.push(`${k} = :k${i} AND ${t} <= :n${i}`);
          sets.push(`${t} = :v${i}`);
        } else {
          conds.push(`(attribute_not_exists(${t}) OR (${k} = :k${i} AND ${t} <= :n${i}))`);
          sets.push(`${t} = :v${i}`, `${k} = :k${i}`);
        }
        break;
      case "addBounded":
        values[`:n${i}`] = num(op.n);
        values[`:m${i}`] = num(op.max);
        values[`:v${i}`] = num(op.add);
        conds.push(`(${k} = :k${i} AND ${t} BETWEEN :n${i} AND :m${i})`);
        sets.push(`${t} = ${t} + :v${i}`);
        break;
      case "add":
        values[`:n${i}`] = num(op.n);
        values[`:v${i}`] = num(op.add);
        conds.push(`(${k} = :k${i} AND ${t} >= :n${i})`);
        sets.push(`${t} = ${t} + :v${i}`);
        break;
      case "sub":
        values[`:v${i}`] = num(op.sub);
        conds.push(`(${k} = :k${i} AND attribute_exists(${t}))`);
        sets.push(`${t} = ${t} - :v${i}`);
        break;
      case "cas":
        values[`:v${i}`] = num(op.newTat);
        if (op.expectTat === undefined) {
          conds.push(`attribute_not_exists(${t})`);
        } else {
          values[`:e${i}`] = num(op.expectTat);
          values[`:x${i}`] = { S: op.expectKey ?? "" };
          conds.push(`(${k} = :x${i} AND ${t} = :e${i})`);
        }
        sets.push(`${t} = :v${i}`, `${k} = :k${i}`);
        break;
    }
  });
  let u = 0;
  for (const [name, delta] of w.used) {
    if (delta === 0n) continue;
    values[`:u${u}`] = num(delta);
    adds.push(`${ref(keys.attr.used(name))} :u${u}`);
    u++;
  }
  if (w.requests !== 0) {
    if (w.requests === 1) {
      adds.push(`${keys.REQUESTS} :one`);
    } else {
      values[":rq"] = { N: String(w.requests) };
      adds.push(`${keys.REQUESTS} :rq`);
    }
  }
  if (w.ttlSec !== undefined) {
    names["#ttl"] = keys.TTL;
    values[":ttl"] = num(w.ttlSec);
    sets.push(w.ttlIfMissing ? "#ttl = if_not_exists(#ttl, :ttl)" : "#ttl = :ttl");
  }
  return {
    TableName: tableName,
    Key: keySpace.itemKey(w.entityId, keys.bucketSk(w.resource)),
    UpdateExpression: `SET ${sets.join(", ")}` + (adds.length ? ` ADD ${adds.join(", ")}` : "") +
      (removes.length ? ` REMOVE ${removes.join(", ")}` : ""),
    ConditionExpression: conds.length ? conds.join(" AND ") : undefined,
    ExpressionAttributeNames: Object.keys(names).length > 0 ? names : undefined,
    ExpressionAttributeValues: values,
    ReturnValuesOnConditionCheckFailure: "ALL_OLD",
  };
}

/** A quota's part of a bucket write (see docs/design.md, "Quotas"). */
function quotaExpression(
  op: Extract<LimitOp, { kind: "quota" | "quotaSub" }>,
  i: number,
  t: string,
  k: string,
  w: string,
  values: Record<string, AttributeValue>,
  conds: string[],
  sets: string[],
): void {
  if (op.kind === "quotaSub") {
    values[`:w${i}`] = num(op.window);
    values[`:v${i}`] = num(op.sub);
    conds.push(`(${k} = :k${i} AND ${w} = :w${i} AND ${t} >= :v${i})`);
    sets.push(`${t} = ${t} - :v${i}`);
    return;
  }
  values[`:l${i}`] = num(op.lo);
  values[`:v${i}`] = num(op.add);
  if (op.same) {
    if (op.max === undefined) {
      conds.push(`(${k} = :k${i} AND ${w} >= :l${i})`);
    } else {
      values[`:m${i}`] = num(op.max);
      conds.push(`(${k} = :k${i} AND ${w} >= :l${i} AND ${t} <= :m${i})`);
    }
    sets.push(`${t} = ${t} + :v${i}`);
    return;
  }
  values[`:w${i}`] = num(op.start);
  conds.push(`(attribute_not_exists(${w}) OR ${w} < :l${i} OR ${k} <> :k${i})`);
  sets.push(`${w} = :w${i}`, `${t} = :v${i}`, `${k} = :k${i}`);
}

/** A concurrent limit's part of a bucket write (see docs/design.md, "Concurrency limits"). */
function slotExpression(
  op: Extract<LimitOp, { kind: "slotTake" | "slotFree" }>,
  i: number,
  ref: (name: string) => string,
  values: Record<string, AttributeValue>,
  conds: string[],
  sets: string[],
  adds: string[],
  removes: string[],
): void {
  const held = ref(keys.attr.held(op.name));
  const slot = ref(keys.attr.slot(op.name, op.id));
  if (op.kind === "slotFree") {
    values[":dec"] = { N: "-1" };
    conds.push(`attribute_exists(${slot})`);
    removes.push(slot);
    adds.push(`${held} :dec`);
    return;
  }
  values[`:m${i}`] = num(op.max);
  values[`:v${i}`] = num(op.exp);
  conds.push(`(attribute_not_exists(${held}) OR ${held} < :m${i})`);
  if (op.reclaim.length > 0) {
    values[`:n${i}`] = num(op.now);
    for (const id of op.reclaim) {
      const old = ref(keys.attr.slot(op.name, id));
      conds.push(`${old} < :n${i}`);
      removes.push(old);
    }
  }
  sets.push(`${slot} = :v${i}`);
  const d = 1 - op.reclaim.length;
  if (d !== 0) {
    values[`:d${i}`] = { N: String(d) };
    adds.push(`${held} :d${i}`);
  }
}

/** A DynamoDB number. */
export function num(n: bigint): AttributeValue {
  return { N: n.toString() };
}
