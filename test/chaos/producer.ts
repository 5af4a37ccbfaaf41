/**
 * Chaos producer: writes events `n` (those with `n % CHAOS_PRODUCERS == CHAOS_PRODUCER_INDEX`, for n below
 * CHAOS_EVENTS) to the outbox with `Outbox.writeBatch`, CHAOS_BATCH per transaction every CHAOS_INTERVAL_MS, on
 * streams `<CHAOS_CATEGORY>-<n % CHAOS_STREAMS>`. Even streams carry `expectedVersion` (the stream's k-th event
 * expects version k - 1), so a resend there meets a version conflict rather than a duplicate id.
 *
 * Each event has the idempotency key `<category>:<n>`: a batch whose commit was cut off (its connection terminated)
 * is simply written again, and the keys make sure it lands once. Prints `wrote <count>` after each batch, `defect
 * <message>` for a write that died rather than failed, and `done <count>` at the end, then exits 0.
 */
import { SqlError } from "@effect/sql/SqlError"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Outbox from "../../src/Outbox.js"
import { Database, Evento, int, main, say, str } from "./child.js"

const program = Effect.gen(function*() {
  const category = yield* Config.string("CHAOS_CATEGORY")
  const events = yield* int("CHAOS_EVENTS", 400)
  const streams = yield* int("CHAOS_STREAMS", 40)
  const producers = yield* int("CHAOS_PRODUCERS", 1)
  const index = yield* int("CHAOS_PRODUCER_INDEX", 0)
  const batch = yield* int("CHAOS_BATCH", 4)
  const interval = yield* int("CHAOS_INTERVAL_MS", 50)
  const versioned = (yield* str("CHAOS_EXPECTED_VERSION", "even")) === "even"

  const mine = Array.from({ length: events }, (_, n) => n).filter((n) => n % producers === index)
  yield* say("ready")

  let written = 0
  for (let start = 0; start < mine.length; start += batch) {
    const entries = mine.slice(start, start + batch).map((n) => {
      const stream = n % streams
      return {
        stream: `${category}-${stream}`,
        message: { type: "Counted", data: { n, producer: index } },
        options: {
          idempotencyKey: `${category}:${n}`,
          ...(versioned && stream % 2 === 0 ? { expectedVersion: Math.floor(n / streams) - 1 } : {})
        }
      }
    })
    // The database may go away under us (terminated backends): write the same batch again until it lands. A
    // connection lost inside the write's own transaction surfaces as a defect, not as a `SqlError` (the ROLLBACK or
    // COMMIT fails, and @effect/sql's `withTransaction` dies then); it is counted (`defect` on stdout) and retried
    // like a failure.
    yield* Outbox.writeBatch(entries).pipe(
      Effect.catchSomeDefect((defect) =>
        defect instanceof SqlError
          ? Option.some(Effect.zipRight(say(`defect ${defect.message}`), Effect.fail(defect)))
          : Option.none()
      ),
      Effect.tapError((error) => Effect.logWarning("producer write failed; retrying", error.message)),
      Effect.retry({
        schedule: Schedule.spaced("100 millis").pipe(Schedule.intersect(Schedule.recurs(300))),
        while: (error) => error._tag === "SqlError"
      })
    )
    written += entries.length
    yield* say(`wrote ${written}`)
    if (interval > 0) yield* Effect.sleep(`${interval} millis`)
  }
  yield* say(`done ${written}`)
}).pipe(Effect.provide(Outbox.layer().pipe(Layer.provideMerge(Layer.merge(Database("producer"), Evento)))))

main(program)
