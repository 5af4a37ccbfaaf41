/**
 * Chaos consumer: `Consumer.layer` (under `Singleton.layer`) on CHAOS_CATEGORY as CHAOS_CONSUMER_ID, optionally one
 * member of a group (CHAOS_GROUP_MEMBER of CHAOS_GROUP_SIZE). Its handler inserts one row per run into
 * `chaos_handled`, so the controller can count how often each message was handled; in transactional mode that
 * insert commits with the mark and the position, or not at all.
 *
 * Faults it can play: CHAOS_SLOW_MS sleeps in every handler run; CHAOS_FAIL_ON makes the handler fail on the event
 * whose `data.n` is that number (every attempt), then `CHAOS_ON_FAILURE` (park or stop) decides.
 *
 * Besides `ready` and `leader`, it prints `fetched <count> <first global position> <last global position>` for each
 * non-empty fetch and, every 250 ms, `stats <json>` with its memory and the most messages it ever held fetched but
 * not yet handled (`maxUnhandled`), which bounds what a slow handler lets pile up.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Config from "effect/Config"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Consumer from "../../src/Consumer.js"
import { EventoClient, type Message } from "../../src/EventoClient.js"
import { bool, Evento, int, main, say, Stores, str } from "./child.js"

class Poisoned extends Data.TaggedError("Poisoned")<{ readonly n: number }> {}

const unhandled = new Set<string>()
let maxUnhandled = 0
let fetches = 0
let handled = 0

/** The EventoDB client with its category reads counted: what came in and is not handled yet. */
const Tracked = Layer.effect(
  EventoClient,
  Effect.map(EventoClient, (client): EventoClient.Service => ({
    ...client,
    categoryGet: (category, options) =>
      client.categoryGet(category, options).pipe(
        Effect.tap((messages) =>
          Effect.suspend(() => {
            const first = messages[0]
            const last = messages[messages.length - 1]
            if (first === undefined || last === undefined) return Effect.void
            fetches += 1
            for (const message of messages) unhandled.add(message.id)
            maxUnhandled = Math.max(maxUnhandled, unhandled.size)
            return say(`fetched ${messages.length} ${first.globalPosition} ${last.globalPosition}`)
          })
        )
      )
  }))
).pipe(Layer.provide(Evento))

const program = Effect.gen(function*() {
  const category = yield* Config.string("CHAOS_CATEGORY")
  const consumerId = yield* str("CHAOS_CONSUMER_ID", "chaos")
  const member = yield* int("CHAOS_GROUP_MEMBER", -1)
  const size = yield* int("CHAOS_GROUP_SIZE", 0)
  const slowMs = yield* int("CHAOS_SLOW_MS", 0)
  const failOn = yield* int("CHAOS_FAIL_ON", -1)
  const onFailure = (yield* str("CHAOS_ON_FAILURE", "stop")) === "park" ? "park" : "stop"

  const handler = (message: Message) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const n = message.data["n"]
      if (slowMs > 0) yield* Effect.sleep(`${slowMs} millis`)
      if (typeof n === "number" && n === failOn) return yield* new Poisoned({ n })
      yield* sql`
        INSERT INTO chaos_handled (consumer_id, event_id, stream, position, global_position, pid)
        VALUES (${consumerId}, ${message.id}, ${message.streamName}, ${message.position}, ${message.globalPosition},
          ${process.pid})
      `
      handled += 1
      unhandled.delete(message.id)
    })

  const options: Consumer.Options<Poisoned | SqlError, SqlClient> = {
    category,
    consumerId,
    group: member >= 0 ? { member, size } : undefined,
    batchSize: yield* int("CHAOS_BATCH_SIZE", 25),
    pollInterval: `${yield* int("CHAOS_POLL_MS", 200)} millis`,
    transactional: yield* bool("CHAOS_TRANSACTIONAL", true),
    retry: { attempts: 2, delay: "20 millis" },
    onFailure,
    restartDelay: `${yield* int("CHAOS_RESTART_MS", 500)} millis`,
    handler
  }

  yield* Effect.suspend(() => {
    const { heapUsed, rss } = process.memoryUsage()
    return say(`stats ${JSON.stringify({ rss, heapUsed, maxUnhandled, unhandled: unhandled.size, fetches, handled })}`)
  }).pipe(Effect.repeat(Schedule.spaced("250 millis")), Effect.forkScoped)

  yield* Layer.build(Consumer.layer(options).pipe(Layer.provide(Layer.merge(Tracked, Stores("consumer")))))
  yield* say("ready")
  return yield* Effect.never
}).pipe(Effect.scoped)

main(program)
