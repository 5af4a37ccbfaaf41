import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import type { ParseError } from "effect/ParseResult"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Consumer from "../Consumer.js"
import { HandlerFailed, UnknownMessageType } from "../Consumer.js"
import { EventoClient, type Message } from "../EventoClient.js"
import { type EventoError, isTransient } from "../EventoError.js"
import { Idempotency } from "../Idempotency.js"
import { type ConsumerKey, PositionStore } from "../PositionStore.js"
import { Singleton } from "../Singleton.js"
import * as ConsumerSql from "./consumerSql.js"
import * as Pokes from "./pokes.js"

// --- metrics ---

const lagGauge = Metric.gauge("eventodb_consumer_lag", {
  description: "Newest global position known to exist minus the consumer's saved position"
})
const handledCounter = Metric.counter("eventodb_consumer_handled_total", {
  description: "Messages a consumer's handler succeeded on",
  incremental: true
})
const parkedCounter = Metric.counter("eventodb_consumer_parked_total", {
  description: "Messages a consumer parked after its handler gave up",
  incremental: true
})
const duplicatesCounter = Metric.counter("eventodb_consumer_duplicates_skipped_total", {
  description: "Messages fetched again that were already marked as processed, and so not handled",
  incremental: true
})
const handlerDuration = Metric.timerWithBoundaries(
  "eventodb_consumer_handler_duration",
  [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
  "Time one handler run took, in milliseconds"
)
const unknownTypesCounter = Metric.counter("eventodb_consumer_unknown_types_total", {
  description: "Messages that a dispatch handler skipped because it has no entry for their type",
  incremental: true
})

export const metrics = {
  lag: lagGauge,
  handled: handledCounter,
  parked: parkedCounter,
  duplicatesSkipped: duplicatesCounter,
  handlerDuration,
  unknownTypes: unknownTypesCounter
}

// --- options ---

interface Settings {
  readonly batchSize: number
  readonly pollInterval: Duration.Duration
  readonly transactional: boolean
  readonly attempts: number
  readonly retryDelay: Duration.Duration
  readonly retryFactor: number
  readonly onFailure: "stop" | "park"
  readonly restartDelay: Duration.Duration
}

const resolve = <E, R>(options: Consumer.Options<E, R>): Settings => {
  const settings: Settings = {
    batchSize: options.batchSize ?? 100,
    pollInterval: Duration.decode(options.pollInterval ?? "1 second"),
    transactional: options.transactional ?? false,
    attempts: options.retry?.attempts ?? 3,
    retryDelay: Duration.decode(options.retry?.delay ?? "100 millis"),
    retryFactor: options.retry?.factor ?? 2,
    onFailure: options.onFailure ?? "stop",
    restartDelay: Duration.decode(options.restartDelay ?? "30 seconds")
  }
  const problems = [
    Number.isInteger(settings.batchSize) && settings.batchSize >= 1 && settings.batchSize <= 10000
      ? undefined
      : "batchSize must be an integer from 1 to 10000",
    Number.isInteger(settings.attempts) && settings.attempts >= 1 ? undefined : "retry.attempts must be at least 1",
    options.group === undefined ||
      (Number.isInteger(options.group.size) && Number.isInteger(options.group.member) && options.group.size >= 1 &&
        options.group.member >= 0 && options.group.member < options.group.size)
      ? undefined
      : "group needs 0 <= member < size",
    options.category.length > 0 && !options.category.includes("-") ? undefined : "category must be a category name",
    options.consumerId.length > 0 ? undefined : "consumerId must not be empty"
  ].filter((problem) => problem !== undefined)
  if (problems.length > 0) throw new Cause.IllegalArgumentException(`Invalid consumer options: ${problems.join("; ")}`)
  return settings
}

// --- failures ---

/** One failed run of the handler, whatever the way it failed (error, defect, self-interruption). */
class Attempt extends Data.TaggedError("Attempt")<{ readonly cause: Cause.Cause<unknown> }> {}

/** The consumer's own SQL failed inside a transactional attempt: waited out, never counted against the message. */
class StoreFailed extends Data.TaggedError("StoreFailed")<{ readonly cause: SqlError }> {}

const isRetriable = (error: EventoError): boolean => isTransient(error) || error._tag === "EventoProtocolError"

// Capped and jittered, so that a fleet of consumers does not return in step after an outage.
const outageBackoff = Schedule.exponential("100 millis").pipe(
  Schedule.union(Schedule.spaced("5 seconds")),
  Schedule.jittered
)

/** Retries database failures of the consumer's bookkeeping until they pass; the state they protect is in memory. */
const waitOutDatabase = <A, R>(self: Effect.Effect<A, SqlError, R>): Effect.Effect<A, never, R> =>
  self.pipe(
    Effect.tapError((error) => Effect.logWarning("Consumer database statement failed; retrying", error)),
    Effect.retry(outageBackoff),
    Effect.catchAll((error) => Effect.die(error))
  )

// --- the consumer ---

export const run = <E, R>(
  options: Consumer.Options<E, R>
): Effect.Effect<never, HandlerFailed | EventoError, R | Consumer.Requirements> =>
  Effect.gen(function*() {
    const settings = resolve(options)
    const client = yield* EventoClient
    const positions = yield* PositionStore
    const idempotency = yield* Idempotency
    const sql = yield* SqlClient
    const store = ConsumerSql.make(sql)
    const key: ConsumerKey = { namespace: client.namespace, category: options.category, consumerId: options.consumerId }

    const labels = [
      MetricLabel.make("namespace", key.namespace),
      MetricLabel.make("category", key.category),
      MetricLabel.make("consumer_id", key.consumerId)
    ]
    const lag = Metric.taggedWithLabels(lagGauge, labels)
    const handled = Metric.taggedWithLabels(handledCounter, labels)
    const parked = Metric.taggedWithLabels(parkedCounter, labels)
    const duplicates = Metric.taggedWithLabels(duplicatesCounter, labels)
    const duration = Metric.taggedWithLabels(handlerDuration, labels)

    const saved = yield* waitOutDatabase(positions.load(key))
    // A fresh consumer reads from the start; one that saved N resumes at N + 1 (the server's read is inclusive).
    let next = Option.match(saved, { onNone: () => 0, onSome: (position) => position + 1 })
    // Newest global position known to exist, and a head a short fetch proved this consumer has nothing before.
    let head = next - 1
    let caughtUp = next - 1
    const updateLag = Metric.set(lag, Math.max(0, head - Math.max(next - 1, caughtUp)))

    // Subscribed before the first fetch, so that a write landing during it still wakes the next wait.
    const pokes = yield* Pokes.subscribe(client, options.category, next)

    const retrySchedule = Schedule.exponential(settings.retryDelay, settings.retryFactor).pipe(
      Schedule.intersect(Schedule.recurs(settings.attempts - 1))
    )

    const fetch = Effect.suspend(() =>
      client.categoryGet(options.category, {
        position: next,
        batchSize: settings.batchSize,
        consumerGroup: options.group,
        correlation: options.correlation
      })
    ).pipe(
      Effect.tapError((error) =>
        isRetriable(error) ? Effect.logWarning("EventoDB read failed; backing off", error) : Effect.void
      ),
      Effect.retry({ schedule: outageBackoff, while: isRetriable })
    )

    const attempt = (message: Message) =>
      Effect.suspend(() => options.handler(message)).pipe(
        Metric.trackDuration(duration),
        // Every way a handler can end badly is a failed attempt, a defect or a self-interruption included. An
        // interruption of the consumer itself never reaches here: recovery does not run on an interrupted fiber.
        Effect.catchAllCause((cause) => Effect.fail(new Attempt({ cause }))),
        Effect.withSpan("Consumer.handle", {
          attributes: {
            "messaging.consumer.id": key.consumerId,
            "messaging.destination.name": key.category,
            "messaging.message.id": message.id,
            "eventodb.stream": message.streamName,
            "eventodb.global_position": message.globalPosition
          }
        })
      )

    /**
     * Runs `once` until it succeeds or the attempts run out, logging each failure. Succeeds with `undefined`, or
     * with the last failure's cause and the attempt count when the handler gave up. A `StoreFailed` is not the
     * handler's doing: it ends the retries and is passed on.
     */
    const withRetries = <RR>(message: Message, once: Effect.Effect<unknown, Attempt | StoreFailed, RR>) => {
      let attempts = 0
      return Effect.suspend(() => {
        attempts += 1
        return once
      }).pipe(
        Effect.tapError((error) =>
          error._tag === "Attempt"
            ? Effect.logWarning("Consumer handler failed", error.cause).pipe(
              Effect.annotateLogs({ messageId: message.id, globalPosition: message.globalPosition, attempts })
            )
            : Effect.void
        ),
        Effect.retry({ schedule: retrySchedule, while: (error) => error._tag === "Attempt" }),
        Effect.as(undefined),
        Effect.catchTag("Attempt", (error) => Effect.succeed({ cause: error.cause, attempts }))
      )
    }

    const failure = (message: Message, cause: Cause.Cause<unknown>, attempts: number) =>
      new HandlerFailed({
        message:
          `Handler of consumer ${key.consumerId} failed ${attempts} times on message ${message.id} (stream ${message.streamName}, global position ${message.globalPosition})`,
        category: key.category,
        consumerId: key.consumerId,
        messageId: message.id,
        stream: message.streamName,
        type: message.type,
        globalPosition: message.globalPosition,
        position: message.position,
        attempts,
        cause: Cause.squash(cause)
      })

    const giveUp = (message: Message, cause: Cause.Cause<unknown>, attempts: number) =>
      Effect.logError(
        settings.onFailure === "park" ? "Consumer handler gave up; parking the message" : "Consumer handler gave up",
        cause
      ).pipe(Effect.annotateLogs({ messageId: message.id, globalPosition: message.globalPosition, attempts }))

    const moved = (position: number) =>
      Effect.sync(() => {
        next = Math.max(next, position + 1)
        head = Math.max(head, position)
      })

    /** Default mode: handlers first, then the marks and the position in one statement. */
    const batchDefault = (batch: ReadonlyArray<Message>, marked: ReadonlySet<string>) => {
      const done: Array<Message> = []
      const toPark: Array<ConsumerSql.Parked> = []
      let through = -1
      // Clears only what it committed, so that a retry after a failed commit sends the same marks again.
      const flush = Effect.suspend(() => {
        if (through < 0) return Effect.void
        const position = through
        const messages = done.slice()
        const parking = toPark.slice()
        return store.commit(key, messages, parking, position).pipe(
          Effect.zipRight(Effect.sync(() => {
            done.splice(0, messages.length)
            toPark.splice(0, parking.length)
            if (through === position) through = -1
          })),
          Effect.zipRight(moved(position))
        )
      })

      const handleAll = Effect.gen(function*() {
        for (const message of batch) {
          if (marked.has(message.id.toLowerCase())) {
            yield* Metric.increment(duplicates)
            through = message.globalPosition
            continue
          }

          const outcome = yield* withRetries(message, attempt(message))
          if (outcome === undefined) {
            yield* Metric.increment(handled)
            done.push(message)
            through = message.globalPosition
            continue
          }

          const { attempts, cause } = outcome
          yield* giveUp(message, cause, attempts)
          if (settings.onFailure === "park") {
            yield* Metric.increment(parked)
            toPark.push({ message, error: Cause.pretty(cause), attempts })
            done.push(message)
            through = message.globalPosition
            continue
          }
          // The messages before it are done: their position is saved, this one's is not.
          yield* waitOutDatabase(flush)
          return yield* failure(message, cause, attempts)
        }
        yield* waitOutDatabase(flush)
      })

      // Interrupted mid-batch (shutdown, lost leadership): record what was handled, so a restart re-runs only the
      // rest. Best effort: the marks stop no double handling if this does not make it.
      return handleAll.pipe(
        Effect.onInterrupt(() =>
          flush.pipe(
            // Finalizers run uninterruptibly; the timeout must be able to cut a hanging commit.
            Effect.interruptible,
            Effect.timeout("5 seconds"),
            Effect.catchAllCause((cause) => Effect.logWarning("Consumer could not save progress on interrupt", cause))
          )
        )
      )
    }

    /** Transactional mode: each message's handler SQL, mark and position in one transaction. */
    const batchTransactional = (batch: ReadonlyArray<Message>, marked: ReadonlySet<string>) =>
      Effect.gen(function*() {
        let skippedThrough = -1
        const saveSkipped = Effect.suspend(() => {
          if (skippedThrough < 0) return Effect.void
          const position = skippedThrough
          return waitOutDatabase(positions.save(key, position)).pipe(
            Effect.zipRight(moved(position)),
            Effect.zipRight(Effect.sync(() => {
              skippedThrough = -1
            }))
          )
        })
        const bookkeeping = <X>(self: Effect.Effect<X, SqlError>) =>
          Effect.mapError(self, (cause) => new StoreFailed({ cause }))
        // The handler's failures are `Attempt`s and the bookkeeping's `StoreFailed`, so a bare `SqlError` here can
        // only be the transaction's own BEGIN or COMMIT.
        const inTransaction = <X, EE extends Attempt | StoreFailed, RR>(self: Effect.Effect<X, EE, RR>) =>
          sql.withTransaction(self).pipe(
            Effect.catchTag("SqlError", (cause) => Effect.fail(new StoreFailed({ cause })))
          )
        const storeRetry = <X, RR>(self: Effect.Effect<X, StoreFailed, RR>) =>
          self.pipe(
            Effect.tapError((error) => Effect.logWarning("Consumer database statement failed; retrying", error.cause)),
            Effect.retry(outageBackoff),
            Effect.catchAll((error) => Effect.die(error.cause))
          )

        for (const message of batch) {
          if (marked.has(message.id.toLowerCase())) {
            yield* Metric.increment(duplicates)
            skippedThrough = message.globalPosition
            continue
          }

          const once = inTransaction(
            attempt(message).pipe(
              Effect.zipRight(bookkeeping(idempotency.markProcessed(key, message))),
              Effect.zipRight(bookkeeping(positions.save(key, message.globalPosition)))
            )
          )
          const outcome = yield* storeRetry(withRetries(message, once))
          if (outcome === undefined) {
            yield* Metric.increment(handled)
            skippedThrough = -1
            yield* moved(message.globalPosition)
            continue
          }

          yield* giveUp(message, outcome.cause, outcome.attempts)
          if (settings.onFailure === "park") {
            const entry = { message, error: Cause.pretty(outcome.cause), attempts: outcome.attempts }
            yield* storeRetry(inTransaction(
              bookkeeping(store.park(key, entry)).pipe(
                Effect.zipRight(bookkeeping(idempotency.markProcessed(key, message))),
                Effect.zipRight(bookkeeping(positions.save(key, message.globalPosition)))
              )
            ))
            yield* Metric.increment(parked)
            skippedThrough = -1
            yield* moved(message.globalPosition)
            continue
          }
          yield* saveSkipped
          return yield* failure(message, outcome.cause, outcome.attempts)
        }
        yield* saveSkipped
      })

    const drainPokes = Queue.takeAll(pokes).pipe(
      Effect.map((positions) => {
        for (const position of positions) head = Math.max(head, position)
      })
    )

    // Wakes on the first poke for a message this consumer has not read yet, or when the poll interval ends.
    const waitForWork = Effect.race(
      Effect.gen(function*() {
        while (true) {
          const positions = yield* Queue.takeBetween(pokes, 1, Number.MAX_SAFE_INTEGER)
          let news = false
          for (const position of positions) {
            head = Math.max(head, position)
            if (position >= next) news = true
          }
          if (news) return
        }
      }),
      Effect.sleep(settings.pollInterval)
    )

    const step = Effect.gen(function*() {
      yield* drainPokes
      const headBefore = head
      const batch = yield* fetch

      if (batch.length > 0) {
        const marked = yield* waitOutDatabase(store.processedAmong(key, batch.map((message) => message.id)))
        yield* (settings.transactional ? batchTransactional(batch, marked) : batchDefault(batch, marked)).pipe(
          Effect.withSpan("Consumer.batch", {
            attributes: {
              "messaging.consumer.id": key.consumerId,
              "messaging.destination.name": key.category,
              "messaging.batch.message_count": batch.length
            }
          })
        )
      }

      // A full batch means more may be waiting: fetch again at once. A short one means caught up as of the fetch.
      if (batch.length >= settings.batchSize) {
        yield* updateLag
        return
      }
      caughtUp = Math.max(caughtUp, headBefore)
      yield* updateLag
      yield* waitForWork
    })

    yield* Effect.logDebug("Consumer started").pipe(Effect.annotateLogs({ next }))
    return yield* Effect.forever(step)
  }).pipe(
    Effect.scoped,
    Effect.annotateLogs({
      package: "eventodb-kit",
      module: "Consumer",
      category: options.category,
      consumerId: options.consumerId
    })
  )

export const layer = <E, R>(
  options: Consumer.Options<E, R>
): Layer.Layer<never, never, R | Consumer.Requirements | Singleton> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const settings = resolve(options)
    const client = yield* EventoClient
    const singleton = yield* Singleton
    const name = `consumer:${client.namespace}:${options.category}:${options.consumerId}`

    yield* singleton.run(name, run(options)).pipe(
      Effect.catchAllCause((cause) => Effect.logError("Consumer stopped; restarting after the delay", cause)),
      Effect.zipRight(Effect.sleep(settings.restartDelay)),
      Effect.forever,
      Effect.annotateLogs({
        package: "eventodb-kit",
        module: "Consumer",
        fiber: "consumer",
        category: options.category,
        consumerId: options.consumerId,
        singleton: name
      }),
      Effect.interruptible,
      Effect.forkScoped
    )
  }))

// --- typed dispatch ---

export const dispatch = <H extends Consumer.DispatchHandlers>(options: Consumer.DispatchOptions<H>) => {
  const unknown = options.unknown ?? "skip"
  const handlers = options.handlers as Consumer.DispatchHandlers
  const decoders = new Map(
    Object.entries(handlers).map(([type, [schema, handler]]) => [
      type,
      {
        decode: Schema.decodeUnknown(schema as Schema.Schema<unknown, unknown, unknown>),
        handler: handler as (data: unknown, message: Message) => Effect.Effect<unknown, unknown, unknown>
      }
    ])
  )
  type HandlerEffect = ReturnType<H[keyof H][1]>
  type Result = Effect.Effect<
    void,
    Effect.Effect.Error<HandlerEffect> | ParseError | UnknownMessageType,
    Effect.Effect.Context<HandlerEffect> | Schema.Schema.Context<H[keyof H][0]>
  >
  return (message: Message): Result => {
    const entry = Object.hasOwn(handlers, message.type) ? decoders.get(message.type) : undefined
    if (entry === undefined) {
      if (unknown === "fail") {
        return Effect.fail(
          new UnknownMessageType({
            message: `No handler for message type ${message.type}`,
            type: message.type,
            messageId: message.id
          })
        )
      }
      return Metric.update(
        Metric.tagged(unknownTypesCounter, "category", message.streamName.split("-", 1)[0] ?? ""),
        1
      ).pipe(
        Effect.zipRight(
          Effect.logDebug("Consumer skipped a message of an unknown type").pipe(
            Effect.annotateLogs({ type: message.type, messageId: message.id })
          )
        )
      )
    }
    return entry.decode(message.data).pipe(
      Effect.flatMap((data) => entry.handler(data, message)),
      Effect.asVoid
    ) as Result
  }
}
