/**
 * A consumer group: the streams of a category split across members by EventoDB's consumer-group rule (MD5 of the
 * stream's id), each stream always to the same member, so per-stream order holds while members work in parallel.
 *
 * Each member is a consumer of its own (`consumerId` distinct per member, its own position and marks) reading with
 * `group: { member, size }`. In production each member usually runs in a process of its own (e.g. the member number
 * from configuration); here all three run in one process.
 *
 * Needs `DATABASE_URL`, `EVENTODB_URL` and `EVENTODB_TOKEN`.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import { Consumer, EventoClient, Idempotency, Migrations, PositionStore, Singleton } from "../src/index.js"

const size = 3
const streams = Array.from({ length: 12 }, (_, i) => `shipment-${i + 1}`)

const program = Effect.gen(function*() {
  const client = yield* EventoClient.EventoClient
  // Which member handled which stream, as the handlers saw it.
  const seen = yield* Ref.make(new Map<string, Set<number>>())

  const member = (index: number) =>
    Consumer.layer({
      category: "shipment",
      consumerId: `tracker-${index}`,
      group: { member: index, size },
      handler: (message) =>
        Ref.update(seen, (map) => new Map(map).set(message.streamName, new Set(map.get(message.streamName)).add(index)))
    })
  // The members run in this scope: they stop when the program ends.
  yield* Layer.build(Layer.mergeAll(member(0), member(1), member(2)))

  yield* Effect.forEach(streams, (stream) =>
    Effect.zipRight(
      client.streamWrite(stream, { type: "Dispatched", data: {} }),
      client.streamWrite(stream, { type: "Delivered", data: {} })
    ), { concurrency: 4 })

  const handled = yield* Ref.get(seen).pipe(
    Effect.filterOrFail((map) => map.size === streams.length),
    Effect.retry(Schedule.spaced("100 millis")),
    Effect.timeout("30 seconds")
  )
  for (let index = 0; index < size; index++) {
    const mine = streams.filter((stream) => handled.get(stream)?.has(index))
    yield* Console.log(`member ${index}: ${mine.join(", ")}`)
  }
  const once = [...handled.values()].every((members) => members.size === 1)
  yield* Console.log(`every stream handled by exactly one member: ${once}`)
})

const PgLive = PgClient.layerConfig({ url: Config.redacted("DATABASE_URL") })
const EventoLive = EventoClient.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))
const Database = Layer.effectDiscard(Migrations.up()).pipe(Layer.provideMerge(PgLive))
const AppLive = Layer.mergeAll(PositionStore.layer, Idempotency.layer, Singleton.layer).pipe(
  Layer.provideMerge(Layer.merge(Database, EventoLive))
)

program.pipe(Effect.scoped, Effect.provide(AppLive), NodeRuntime.runMain)
