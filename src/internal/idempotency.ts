import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import type { Message } from "../EventoClient.js"
import type { Idempotency } from "../Idempotency.js"
import type { ConsumerKey } from "../PositionStore.js"
import { checkEventId, checkKey, checkPosition, dieOnInput } from "./positionStore.js"

/** Wraps the service so marks are checked first, in the SQL and memory layers alike; nothing bad is written. */
const checked = (store: Idempotency.Service): Idempotency.Service => ({
  isProcessed: (key, eventId) =>
    checkKey(key).pipe(
      Effect.zipRight(checkEventId(eventId)),
      Effect.zipRight(Effect.suspend(() => store.isProcessed(key, eventId)))
    ),
  markProcessed: (key, message) =>
    checkKey(key).pipe(
      Effect.zipRight(checkEventId(typeof message === "object" && message !== null ? message.id : undefined)),
      Effect.zipRight(Effect.suspend(() => checkPosition(message.globalPosition, "message.globalPosition"))),
      // Suspended: building the store's effect already reads the key and the message.
      Effect.zipRight(Effect.suspend(() => store.markProcessed(key, message)))
    ),
  cleanup: (options) => store.cleanup(options)
})

const Processed = Schema.Tuple(Schema.Struct({ processed: Schema.Boolean }))
const Removed = Schema.Tuple(Schema.Struct({ removed: Schema.NumberFromString }))

/** The SQL store, on `evento_processed_events`. Statements join the calling fiber's transaction. */
export const make: Effect.Effect<Idempotency.Service, never, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = (yield* SqlClient.SqlClient).withoutTransforms()

  const isProcessed = (key: ConsumerKey, eventId: string) =>
    sql`
      SELECT EXISTS (
        SELECT 1
        FROM evento_processed_events
        WHERE namespace = ${key.namespace}
          AND category = ${key.category}
          AND consumer_id = ${key.consumerId}
          AND event_id = ${eventId}::uuid
      ) AS processed
    `.pipe(
      Effect.flatMap((rows) => Effect.orDie(Schema.decodeUnknown(Processed)(rows))),
      Effect.map(([row]) => row.processed)
    )

  // Keyed by consumer (LESSONS 10): another consumer's mark of the same event is a different row.
  const markProcessed = (key: ConsumerKey, message: Message) =>
    sql`
      INSERT INTO evento_processed_events
        (event_id, namespace, event_type, category, consumer_id, global_position)
      VALUES
        (${message.id}::uuid, ${key.namespace}, ${message.type}, ${key.category}, ${key.consumerId},
         ${message.globalPosition})
      ON CONFLICT (namespace, category, consumer_id, event_id) DO NOTHING
    `.pipe(Effect.asVoid)

  // A mark above its consumer's saved position still guards a message the consumer may meet again (after a crash
  // before the position moved, or a reset), so only marks at or below it go. Marks from version 1 have no
  // position to compare and go by age alone.
  const cleanup = ({ olderThan }: { readonly olderThan: Duration.DurationInput }) =>
    sql`
      WITH removed AS (
        DELETE FROM evento_processed_events AS e
        WHERE e.processed_at < now() - make_interval(secs => ${Duration.toMillis(olderThan) / 1000})
          AND (
            e.global_position IS NULL
            OR EXISTS (
              SELECT 1
              FROM evento_consumer_positions AS p
              WHERE p.namespace = e.namespace
                AND p.category = e.category
                AND p.consumer_id = e.consumer_id
                AND p.position >= e.global_position
            )
          )
        RETURNING 1
      )
      SELECT count(*)::text AS removed FROM removed
    `.pipe(
      Effect.flatMap((rows) => Effect.orDie(Schema.decodeUnknown(Removed)(rows))),
      Effect.map(([row]) => row.removed)
    )

  const store = checked({ isProcessed, markProcessed, cleanup })
  return {
    isProcessed: Effect.fn("Idempotency.isProcessed")(store.isProcessed),
    markProcessed: Effect.fn("Idempotency.markProcessed")(store.markProcessed),
    cleanup: Effect.fn("Idempotency.cleanup")(store.cleanup)
  }
})

interface Mark {
  readonly processedAt: number
  readonly globalPosition: number
}

// UUIDs compare case-insensitively in PostgreSQL; the memory store follows.
const markKey = (key: ConsumerKey, eventId: string) =>
  JSON.stringify([key.namespace, key.category, key.consumerId, eventId.toLowerCase()])

/** The in-memory store: marks in a `Ref`, timed with the `Clock` (so `TestClock` ages them). */
export const makeMemory: Effect.Effect<Idempotency.Service> = Effect.gen(function*() {
  const marks = yield* Ref.make(HashMap.empty<string, Mark>())

  return checked({
    isProcessed: (key, eventId) => Effect.map(Ref.get(marks), HashMap.has(markKey(key, eventId))),
    markProcessed: (key, message) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Ref.update(marks, (map) => {
          const id = markKey(key, message.id)
          return HashMap.has(map, id) ? map : HashMap.set(map, id, {
            processedAt: now,
            globalPosition: message.globalPosition
          })
        })),
    cleanup: ({ olderThan }) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Ref.modify(marks, (map) => {
          const cutoff = now - Duration.toMillis(olderThan)
          const kept = HashMap.filter(map, (mark) => mark.processedAt >= cutoff)
          return [HashMap.size(map) - HashMap.size(kept), kept]
        }))
  })
})

/** `Idempotency` for callers whose keys and messages are checked already: a refusal there becomes a defect. */
export const assumeValidInput = (store: Idempotency.Service): {
  readonly isProcessed: (key: ConsumerKey, eventId: string) => Effect.Effect<boolean, SqlError>
  readonly markProcessed: (key: ConsumerKey, message: Message) => Effect.Effect<void, SqlError>
  readonly cleanup: Idempotency.Service["cleanup"]
} => ({
  isProcessed: (key, eventId) => dieOnInput(store.isProcessed(key, eventId)),
  markProcessed: (key, message) => dieOnInput(store.markProcessed(key, message)),
  cleanup: store.cleanup
})
