/**
 * Every program in examples/ runs as its own process (`node --import tsx`), against the run's EventoDB (a fresh
 * namespace) and PostgreSQL (a fresh database), and must exit 0 printing what it demonstrates.
 */
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { readdirSync } from "node:fs"
import * as EventoTest from "./support/EventoTest.js"
import * as PgTest from "./support/PgTest.js"
import { spawnTs } from "./support/Processes.js"

/** What each example must print, line by line (each expected line is a prefix of some stdout line). */
const expected: Record<string, ReadonlyArray<string>> = {
  "client.ts": [
    "stale write: refused (expected 0)",
    "account-1: 0:Opened, 1:Deposited",
    "last Opened: Ada",
    "versions: account-1 1, account-404 true",
    "category account: 3 messages",
    "group of 2: member 0 gets 2, member 1 gets 1",
    "streams: account-1@1, account-2@0",
    "categories: account (3)",
    "info: 3 messages"
  ],
  "transactional-write.ts": [
    "opened a-1, outbox id ",
    "opening a-1 again: rolled back",
    "idempotent retry returns the first id: true",
    "outbox: account-a-1 AccountOpened, account-a-1 EmailVerified"
  ],
  "sender.ts": [
    "wrote 3 events to the outbox",
    "order-1 in EventoDB: OrderPlaced, OrderPaid",
    "message ids are the outbox ids: true",
    "backlog: 0 unsent, 0 parked, oldest none"
  ],
  "singleton-consumer.ts": ["balances: account-1 70, account-2 5"],
  // The split follows the MD5 rule of the server's consumerGroup filter.
  "consumer-group.ts": [
    "member 0: shipment-1, shipment-4, shipment-5, shipment-12",
    "member 1: shipment-2, shipment-8, shipment-9, shipment-10",
    "member 2: shipment-3, shipment-6, shipment-7, shipment-11",
    "every stream handled by exactly one member: true"
  ],
  "typed-dispatch.ts": ["cart-7 after 5 messages: tea x2", "parked: cart-7 ItemAdded after 2 attempts"],
  "unit-test.ts": ["✓ welcomes each new partner once"],
  "quick-start.ts": ["welcomed: ada@example.com"]
}

const runExample = (file: string) =>
  Effect.gen(function*() {
    const target = yield* EventoTest.EventoTarget
    const { token } = yield* EventoTest.freshNamespace
    const database = yield* PgTest.freshDatabase
    const child = yield* spawnTs(`examples/${file}`, {
      env: { EVENTODB_URL: target.url, EVENTODB_TOKEN: Redacted.value(token), DATABASE_URL: database.url }
    })
    const status = yield* child.exited.pipe(Effect.timeout("100 seconds"))
    const stdout = yield* child.stdout
    const stderr = yield* child.stderr
    const context = `${file} exited with ${status.code}\nstdout:\n${stdout.join("\n")}\nstderr:\n${
      stderr.slice(-40).join("\n")
    }`
    assert.strictEqual(status.code, 0, context)
    for (const line of expected[file] ?? []) {
      assert.isTrue(stdout.some((printed) => printed.startsWith(line)), `missing "${line}"\n${context}`)
    }
  })

layer(EventoTest.layerTarget, { excludeTestServices: true, timeout: "120 seconds" })("examples", (it) => {
  it.effect("every example file has expectations here", () =>
    Effect.sync(() => {
      const files = readdirSync("examples").filter((file) => file.endsWith(".ts") && file !== "demo.ts").sort()
      assert.deepStrictEqual(files, Object.keys(expected).sort())
    }))

  for (const file of Object.keys(expected)) {
    it.scoped(`examples/${file} runs and prints what it shows`, () => runExample(file), {
      concurrent: true,
      timeout: 120_000
    })
  }
})
