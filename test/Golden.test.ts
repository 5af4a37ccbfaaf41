/**
 * The in-process server against a recording of the real one: start `eventodb-kit dev-server` as its own process,
 * replay the recording script against it from another process, and compare case by case with the fixture that
 * was recorded from EventoDB 0.7.0 (Postgres backend, auth enforced). Withheld cases are skipped by the comparison;
 * their semantics come from PROTOCOL.md and are covered by the store's own tests.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Token from "../src/internal/memory/token.js"
import * as Processes from "./support/Processes.js"

const fixtures = join(import.meta.dirname, "fixtures", "golden")
const golden = join(fixtures, "golden.json")

/** Runs a Node script to completion: its exit code and output. */
const node = (args: ReadonlyArray<string>) =>
  Effect.async<{ readonly code: number; readonly stdout: string; readonly stderr: string }>((resume) => {
    const child = execFile(process.execPath, [...args], { timeout: 120_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
      resume(Effect.succeed({ code, stdout, stderr }))
    })
    return Effect.sync(() => void child.kill("SIGKILL"))
  })

const totals = (stdout: string) => {
  const match = /(\d+) passed, (\d+) failed, (\d+) skipped\s*$/.exec(stdout)
  assert.isNotNull(match, stdout)
  return { passed: Number(match![1]), failed: Number(match![2]), skipped: Number(match![3]) }
}

describe("golden recording", () => {
  it.scopedLive("the dev server answers every recorded case as the real server did", () =>
    Effect.gen(function*() {
      const server = yield* Processes.spawnTs("src/bin.ts", { args: ["dev-server", "--port", "0"] })
      const line = yield* server.waitForLine((line) => line.startsWith("listening on "), "60 seconds").pipe(
        Effect.orDie
      )
      const url = line.slice("listening on ".length)

      const directory = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(join(tmpdir(), "golden-"))),
        (directory) => Effect.sync(() => rmSync(directory, { recursive: true, force: true }))
      )
      const recording = join(directory, "recording.json")
      const recorded = yield* node([join(fixtures, "record-golden.mjs"), url, Token.defaultAdminToken, recording])
      assert.strictEqual(recorded.code, 0, recorded.stderr)

      const cases = (JSON.parse(readFileSync(golden, "utf8")) as { cases: ReadonlyArray<{ response: unknown }> }).cases
      const withheld = cases.filter((c) => c.response === "withheld").length

      const compared = yield* node([join(fixtures, "compare-golden.mjs"), golden, recording])
      const result = totals(compared.stdout)
      assert.deepStrictEqual(result, { passed: cases.length - withheld, failed: 0, skipped: withheld }, compared.stdout)
      assert.strictEqual(compared.code, 0)

      // The human texts too (error messages and details): the server's words, Go's JSON errors included.
      const messages = totals(
        (yield* node([join(fixtures, "compare-golden.mjs"), golden, recording, "--messages"])).stdout
      )
      console.log(
        `golden: ${result.passed} passed, ${result.failed} failed, ${result.skipped} skipped; ` +
          `with messages: ${messages.failed} differ`
      )
      assert.strictEqual(messages.failed, 0)
    }), { timeout: 120_000 })
})
