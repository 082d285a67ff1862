/**
 * `zae-limiter entity disable|enable|bypass|set-parent|set-cascade` and
 * `zae-limiter resource disable|enable|controls`: entity and resource controls.
 *
 * @module
 */

import type { Command } from "commander";
import type { Entity } from "../mod.ts";
import { type CommandContext, commandGroup, connectionOptions, withLimiter } from "./context.ts";
import { UsageError } from "./limits.ts";
import { escapeControls } from "./report.ts";

/** `on` or `off` as a boolean; anything else is a usage error naming the argument. */
function onOff(value: string, what: string): boolean {
  if (value === "on") return true;
  if (value === "off") return false;
  throw new UsageError(`Invalid ${what}: ${JSON.stringify(value)} (must be on or off)`);
}

/** One line saying an entity's controls. */
function controlsLine(e: Entity): string {
  return `${escapeControls(e.entityId)}: ${e.disabled ? "disabled" : "enabled"}${
    e.bypass ? ", bypass" : ""
  }, ` +
    `parent ${
      e.parentId === undefined ? "(none)" : escapeControls(e.parentId)
    }, cascade ${e.cascade}`;
}

/** Adds the control commands to the `entity` and `resource` groups (made when missing). */
export function addControlCommands(program: Command, ctx: CommandContext): void {
  const { command, print, io } = ctx;
  const entity = commandGroup(program, ctx, "entity", "Manage entities (projects, API keys)");
  const ent = (name: string, description: string, examples: string[]) =>
    connectionOptions(command(entity, name, description, examples));
  const entityAction = (
    change: (l: Parameters<Parameters<typeof withLimiter>[2]>[0], id: string) => Promise<Entity>,
  ) =>
  async (entityId: string, opts: Record<string, unknown>, c: Command) => {
    const after = await withLimiter(io, opts, (l) => change(l, entityId));
    print(c, after, controlsLine(after));
  };
  ent("disable <entityId>", "Refuse every acquire of an entity (and of its children)", [
    "zae-limiter entity disable key-1",
  ]).action(entityAction((l, id) => l.disableEntity(id)));
  ent("enable <entityId>", "Allow a disabled entity's acquires again", [
    "zae-limiter entity enable key-1",
  ]).action(entityAction((l, id) => l.enableEntity(id)));
  ent("bypass <entityId> <on|off>", "Admit an entity's acquires without consuming (or stop)", [
    "zae-limiter entity bypass internal-batch on",
    "zae-limiter entity bypass internal-batch off",
  ]).action(async (entityId: string, value: string, opts, c: Command) => {
    const bypass = onOff(value, "bypass");
    await entityAction((l, id) => l.setBypass({ entityId: id, bypass }))(entityId, opts, c);
  });
  ent("set-parent <entityId>", "Move an entity under a parent, or detach it (--none)", [
    "zae-limiter entity set-parent key-1 --parent proj-2",
    "zae-limiter entity set-parent key-1 --none",
  ])
    .option("--parent <parentId>", "the new parent (existing, top-level)")
    .option("--none", "detach the entity from its parent", false)
    .action(async (entityId: string, opts, c: Command) => {
      if ((opts.parent === undefined) === !opts.none) {
        throw new UsageError("Give exactly one of --parent <parentId> and --none");
      }
      const parentId: string | undefined = opts.parent;
      await entityAction((l, id) => l.setParent({ entityId: id, parentId }))(entityId, opts, c);
    });
  ent("set-cascade <entityId> <on|off>", "Set whether acquires cascade to the parent", [
    "zae-limiter entity set-cascade key-1 on",
  ]).action(async (entityId: string, value: string, opts, c: Command) => {
    const cascade = onOff(value, "cascade");
    await entityAction((l, id) => l.setCascade({ entityId: id, cascade }))(entityId, opts, c);
  });

  const resource = commandGroup(program, ctx, "resource", "Manage resources (defaults, controls)");
  const res = (name: string, description: string, examples: string[]) =>
    connectionOptions(command(resource, name, description, examples));
  const resourceAction =
    (disabled: boolean) => async (name: string, opts: Record<string, unknown>, c: Command) => {
      const controls = await withLimiter(
        io,
        opts,
        (l) => disabled ? l.disableResource(name) : l.enableResource(name),
      );
      print(
        c,
        { resource: name, ...controls, disabled },
        `${escapeControls(name)}: ${disabled ? "disabled" : "enabled"}`,
      );
    };
  res("disable <resource>", "Refuse every acquire on a resource", [
    "zae-limiter resource disable gpt-4",
  ]).action(resourceAction(true));
  res("enable <resource>", "Allow acquires on a disabled resource again", [
    "zae-limiter resource enable gpt-4",
  ]).action(resourceAction(false));
  res("controls <resource>", "Show a resource's controls", [
    "zae-limiter resource controls gpt-4",
  ]).action(async (name: string, opts, c: Command) => {
    const controls = await withLimiter(io, opts, (l) => l.getResourceControls(name));
    const disabled = controls.disabled === true;
    print(
      c,
      { resource: name, disabled },
      `${escapeControls(name)}: ${disabled ? "disabled" : "enabled"}`,
    );
  });
}
