import assert from "node:assert/strict";
import { ModelLoadError } from "../../src/model/errors.ts";

/** Awaits `p`, expecting a one-line ModelLoadError whose message matches every pattern. */
export async function rejectsLoad(p: Promise<unknown>, ...patterns: RegExp[]): Promise<ModelLoadError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ModelLoadError, `expected ModelLoadError, got ${e}`);
    assert.ok(!e.message.includes("\n"), `message must be one line: ${e.message}`);
    for (const re of patterns) assert.match(e.message, re);
    return e;
  }
  assert.fail("expected a ModelLoadError");
}
