/**
 * Swapping layers in a unit test. Application code asks for services (`EventoClient`, `PositionStore`,
 * `Idempotency`, `Singleton`) and never builds them, so a test provides in-memory ones: `EventoMemory.layer` (the
 * in-process store with EventoDB's semantics, no sockets), `PositionStore.layerMemory`, `Idempotency.layerMemory`
 * and `Singleton.layerMemory`. Nothing to start, nothing to clean up.
 *
 * With `@effect/vitest` the test below reads:
 *
 *   it.layer(TestLayer)("welcomeNewPartners", (it) => {
 *     it.effect("welcomes each new partner once", () => welcomesEachPartnerOnce)
 *   })
 *
 * Here it runs as a plain program, so that it needs nothing but `npx tsx examples/unit-test.ts`.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import { deepStrictEqual, strictEqual } from "node:assert/strict"
import { EventoClient, Idempotency, PositionStore, Singleton } from "../src/index.js"
import { EventoMemory } from "../src/testing.js"

// --- application code ---

class Mailer extends Context.Tag("app/Mailer")<Mailer, {
  readonly send: (to: string, text: string) => Effect.Effect<void>
}>() {}

/**
 * A job run from a schedule: mails every partner who signed up since its last run, once each, on one node at a
 * time. It remembers how far it got (`PositionStore`) and whom it mailed (`Idempotency`). Yields how many it mailed.
 */
const welcomeNewPartners = Singleton.run(
  "welcome-new-partners",
  Effect.gen(function*() {
    const client = yield* EventoClient.EventoClient
    const mailer = yield* Mailer
    const key = { namespace: client.namespace, category: "partner", consumerId: "welcome-mail" }

    const saved = yield* PositionStore.load(key)
    const messages = yield* client.categoryGet("partner", {
      position: Option.match(saved, {
        onNone: () => 0,
        onSome: (position) => position + 1
      })
    })
    let mailed = 0
    for (const message of messages) {
      if (message.type === "PartnerSignedUp" && !(yield* Idempotency.isProcessed(key, message.id))) {
        yield* mailer.send(String(message.data.email), "Welcome aboard!")
        yield* Idempotency.markProcessed(key, message)
        mailed++
      }
      yield* PositionStore.save(key, message.globalPosition)
    }
    return mailed
  })
)

// --- the test ---

const TestLayer = Layer.mergeAll(
  EventoMemory.layer,
  PositionStore.layerMemory,
  Idempotency.layerMemory,
  Singleton.layerMemory
)

/** A mailer that records what it would send. */
const recordingMailer = Effect.map(Ref.make<ReadonlyArray<string>>([]), (sent) => ({
  mailer: Mailer.of({ send: (to) => Ref.update(sent, (all) => [...all, to]) }),
  sent: Ref.get(sent)
}))

const welcomesEachPartnerOnce = Effect.gen(function*() {
  const client = yield* EventoClient.EventoClient
  const { mailer, sent } = yield* recordingMailer
  const job = Effect.provideService(welcomeNewPartners, Mailer, mailer)

  yield* client.streamWrite("partner-1", { type: "PartnerSignedUp", data: { email: "ada@example.com" } })
  yield* client.streamWrite("partner-1", { type: "ContractSigned", data: {} })
  yield* client.streamWrite("partner-2", { type: "PartnerSignedUp", data: { email: "grace@example.com" } })
  strictEqual(yield* job, 2)
  strictEqual(yield* job, 0)

  yield* client.streamWrite("partner-3", { type: "PartnerSignedUp", data: { email: "edsger@example.com" } })
  strictEqual(yield* job, 1)
  deepStrictEqual(yield* sent, ["ada@example.com", "grace@example.com", "edsger@example.com"])
  yield* Console.log("✓ welcomes each new partner once")
})

welcomesEachPartnerOnce.pipe(Effect.provide(TestLayer), NodeRuntime.runMain)
