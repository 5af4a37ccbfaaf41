/**
 * The EventoDB client on its own: namespace administration, writes with optimistic concurrency, and reads.
 *
 * Needs an EventoDB (`EVENTODB_URL`, default http://127.0.0.1:8080) and a token (`EVENTODB_TOKEN`). Locally:
 *
 *   npx tsx src/bin.ts dev-server &
 *   EVENTODB_TOKEN=ns_ZGVmYXVsdA_0000000000000000000000000000000000000000000000000000000000000000 \
 *     npx tsx examples/client.ts
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { EventoClient } from "../src/index.js"

const program = Effect.gen(function*() {
  const client = yield* EventoClient.EventoClient

  // Any valid token may create and delete namespaces: EventoDB has no admin role.
  const name = `example-${Date.now().toString(36)}`
  const created = yield* Effect.acquireRelease(
    client.namespaceCreate(name, { description: "examples/client.ts" }),
    () => Effect.orDie(client.namespaceDelete(name))
  )
  const accounts = yield* client.withToken(created.token)
  yield* Console.log(`namespace ${accounts.namespace} created`)

  // expectedVersion -1: the stream must not exist yet. Then each write names the version it builds on.
  const opened = yield* accounts.streamWrite(
    "account-1",
    { type: "Opened", data: { owner: "Ada" } },
    { expectedVersion: -1 }
  )
  yield* accounts.streamWrite("account-1", { type: "Deposited", data: { amount: 100 } }, {
    expectedVersion: opened.position
  })
  yield* accounts.streamWrite("account-2", { type: "Opened", data: { owner: "Grace" } })

  // A writer that decided on stale state is refused, and can read again and retry.
  const stale = yield* accounts.streamWrite("account-1", { type: "Withdrawn", data: { amount: 500 } }, {
    expectedVersion: 0
  }).pipe(
    Effect.as("written"),
    Effect.catchTag(
      "StreamVersionConflict",
      (conflict) => Effect.succeed(`refused (expected ${conflict.expectedVersion})`)
    )
  )
  yield* Console.log(`stale write: ${stale}`)

  const history = yield* accounts.streamGet("account-1")
  yield* Console.log(`account-1: ${history.map((message) => `${message.position}:${message.type}`).join(", ")}`)
  const last = yield* accounts.streamLast("account-1", { type: "Opened" })
  yield* Console.log(`last Opened: ${Option.match(last, { onNone: () => "none", onSome: (m) => m.data.owner })}`)
  const version = yield* accounts.streamVersion("account-1")
  const missing = yield* accounts.streamVersion("account-404")
  yield* Console.log(
    `versions: account-1 ${Option.getOrElse(version, () => -1)}, account-404 ${Option.isNone(missing)}`
  )

  // A category read is in global-position order; a consumer group member gets only its share of the streams.
  const category = yield* accounts.categoryGet("account", { position: 0, batchSize: 100 })
  yield* Console.log(`category account: ${category.length} messages`)
  const shares = yield* Effect.forEach([0, 1], (member) =>
    Effect.map(
      accounts.categoryGet("account", { consumerGroup: { member, size: 2 } }),
      (messages) => messages.length
    ))
  yield* Console.log(`group of 2: member 0 gets ${shares[0]}, member 1 gets ${shares[1]}`)

  const streams = yield* accounts.namespaceStreams({ prefix: "account-" })
  const categories = yield* accounts.namespaceCategories
  const info = yield* client.namespaceInfo(name)
  yield* Console.log(`streams: ${streams.map((s) => `${s.stream}@${s.version}`).join(", ")}`)
  yield* Console.log(`categories: ${categories.map((c) => `${c.category} (${c.messageCount})`).join(", ")}`)
  yield* Console.log(`info: ${info.messageCount} messages; server ${yield* client.systemVersion}`)
})

const EventoLive = EventoClient.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))

program.pipe(Effect.scoped, Effect.provide(EventoLive), NodeRuntime.runMain)
