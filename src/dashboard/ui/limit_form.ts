/// <reference lib="dom" />
/**
 * The form editing one stored limit (name, capacity, refill amount, refill period, soft). It
 * sends the level's whole list with this limit changed (or added) to
 * `PUT /api/entities/:id/limits`; the API validates exactly as the library does, and a 400's
 * rule is shown beside the field it names (`aria-invalid`, `aria-describedby`). On success the
 * form reports the limits the API read back after the write.
 *
 * @module
 */

import type { LimitsWrite, LimitsWriteResult, LimitView } from "../api_types.ts";
import { api, ApiError, seg } from "./api.ts";
import { h, replaceChildren, uid } from "./dom.ts";
import { numberField } from "./format.ts";

/** The fields a form edits, by the names the API's errors use. */
const FIELDS = ["name", "capacity", "refillAmount", "refillPeriodSeconds", "soft"] as const;
type Field = typeof FIELDS[number];

const LABELS: Record<Field, string> = {
  name: "Name",
  capacity: "Capacity (tokens)",
  refillAmount: "Refill amount (tokens)",
  refillPeriodSeconds: "Refill period (seconds)",
  soft: "Soft (metered, never refuses)",
};

/** Which of the form's fields an API error names, from its `field` (e.g. `limit rpm: capacity`). */
export function fieldOf(apiField: string | undefined): Field | undefined {
  if (!apiField) return undefined;
  const match = /(name|capacity|refillAmount|refillPeriodSeconds|soft)\]?$/.exec(apiField);
  return match ? match[1] as Field : undefined;
}

/**
 * Whether an API error's field is about the limit named `name`: `limit rpm: capacity` is about
 * `rpm` only; a field naming no limit (`limit.name`, `capacity`) is about the one edited.
 */
export function namesThisLimit(apiField: string | undefined, name: string): boolean {
  const match = /^limit (.+): [A-Za-z]+$/.exec(apiField ?? "");
  return match === null || match[1] === name;
}

/** Where a form writes: the entity, the resource (`*`: entity-wide) and the level's limits. */
export interface LimitTarget {
  /** The entity edited. */
  entityId: string;
  /** The resource, or `*` for the entity-wide limits. */
  resource: string;
  /** The level's stored limits now (`null`: none). */
  current: LimitView[] | null;
}

/**
 * A form for `limit` of `target` (or, with no limit, one adding a rate limit). `onSaved` gets
 * the API's answer, read back from the table.
 */
export function limitForm(
  target: LimitTarget,
  limit: LimitView | undefined,
  onSaved: (result: LimitsWriteResult) => void,
): HTMLFormElement {
  const kind = limit?.kind ?? "rate";
  const title = limit ? `Edit ${limit.name}` : "Add a rate limit";
  const shown: Field[] = kind === "rate"
    ? [...FIELDS]
    : kind === "quota"
    ? ["name", "capacity", "soft"]
    : ["name", "capacity"];
  const inputs = new Map<Field, HTMLInputElement>();
  const errors = new Map<Field, HTMLElement>();
  const rows = shown.map((field) => {
    const id = uid(`limit-${field}`);
    const errorId = `${id}-error`;
    const value = limit ? valueOf(limit, field) : "";
    const input = field === "soft"
      ? h("input", { id, name: field, type: "checkbox", checked: limit?.soft === true })
      : h("input", {
        id,
        name: field,
        type: "text",
        inputmode: field === "name" ? undefined : "decimal",
        value,
        autocomplete: "off",
        spellcheck: "false",
      });
    const error = h("p", { id: errorId, class: "field-error", hidden: true });
    inputs.set(field, input);
    errors.set(field, error);
    return h(
      "div",
      { class: field === "soft" ? "field check" : "field" },
      h("label", { for: id }, LABELS[field]),
      input,
      error,
    );
  });
  const formError = h("p", { class: "form-error", role: "alert", hidden: true });
  const status = h("p", { class: "form-status", role: "status" });
  const form = h(
    "form",
    { class: "limit-form", novalidate: true, "data-limit": limit?.name ?? "" },
    h(
      "fieldset",
      {},
      h("legend", {}, title),
      rows,
      formError,
      h("button", { type: "submit" }, limit ? `Save ${limit.name}` : "Add limit"),
      status,
    ),
  );

  const clearErrors = () => {
    for (const field of shown) {
      const input = inputs.get(field)!;
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-describedby");
      const error = errors.get(field)!;
      error.hidden = true;
      error.textContent = "";
    }
    formError.hidden = true;
    formError.textContent = "";
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    status.textContent = "Saving…";
    const edited = editedJson(limit, shown, inputs);
    const current = target.current ?? [];
    const list = limit
      ? current.map((l) => (l.name === limit.name ? edited : l.json))
      : [...current.map((l) => l.json), edited];
    const body: LimitsWrite = { resource: target.resource, limits: list };
    try {
      const result = await api<LimitsWriteResult>(`entities/${seg(target.entityId)}/limits`, {
        method: "PUT",
        body,
      });
      const stored = result.limits?.map((l) => l.text).join("; ") ?? "none";
      replaceChildren(status, "Saved. Stored now: ", h("span", { class: "stored" }, stored));
      onSaved(result);
    } catch (err) {
      status.textContent = "";
      const field = err instanceof ApiError && err.status === 400 &&
          namesThisLimit(err.error.field, String(edited.name))
        ? fieldOf(err.error.field)
        : undefined;
      if (field && inputs.has(field) && err instanceof ApiError) {
        const { rule, value } = err.error;
        const message = rule
          ? `${LABELS[field]} ${rule}${value !== undefined ? ` (got ${value})` : ""}.`
          : err.error.message;
        const input = inputs.get(field)!;
        const error = errors.get(field)!;
        error.textContent = message;
        error.hidden = false;
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", error.id);
        input.focus();
      } else {
        formError.textContent = err instanceof ApiError ? err.error.message : String(err);
        formError.hidden = false;
      }
    }
  });
  return form;
}

function valueOf(limit: LimitView, field: Field): string {
  if (field === "name") return limit.name;
  if (field === "capacity") return String(limit.capacity);
  if (field === "refillAmount") return String(limit.refillAmount ?? "");
  if (field === "refillPeriodSeconds") return String(limit.refillPeriodSeconds ?? "");
  return "";
}

/** The limit's `toJSON()` shape with the form's values in place of the edited fields. */
function editedJson(
  limit: LimitView | undefined,
  shown: Field[],
  inputs: Map<Field, HTMLInputElement>,
): Record<string, unknown> {
  const json: Record<string, unknown> = limit ? { ...(limit.json as Record<string, unknown>) } : {};
  for (const field of shown) {
    const input = inputs.get(field)!;
    if (field === "soft") {
      if (input.checked) json.soft = true;
      else delete json.soft;
    } else if (field === "name") json.name = input.value.trim();
    else json[field] = numberField(input.value);
  }
  return json;
}
