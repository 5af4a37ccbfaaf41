/**
 * The outbox sender: the SQL it runs, how it classifies EventoDB's answers, and its loop.
 *
 * One pass selects the sendable rows (the unsent, unparked rows of streams that nothing earlier blocks), groups
 * them by stream, sends each group in `seq` order with the streams in parallel, and repeats until nothing is
 * sendable. The loop runs passes on a notification, on the poll schedule, and when a row's backoff runs out.
 */
import { PgClient } from "@effect/sql-pg/PgClient"
import { SqlClient } from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { EventoClient, type JsonObject, type NewMessage, type WriteOptions } from "../EventoClient.js"
import { EventoError } from "../EventoError.js"
import type { ParkedRow } from "../OutboxSender.js"

/**
 * The channel `Outbox.write` notifies inside the writer's transaction; the payload is the namespace. Spelled out
 * rather than imported from internal/outbox.ts, which imports Outbox.ts: the cycle would leave it uninitialised.
 */
export const channel = "evento_outbox"

/** The name the sender competes for under `Singleton`. */
export const singletonName = (namespace: string): string => `outbox-sender:${namespace}`

// --- options ---

/** Options with every default applied. */
export interface Resolved {
  readonly pollInterval: Duration.Duration
  readonly batchSize: number
  readonly concurrency: number
  readonly maxAttempts: number
  readonly backoff: {
    readonly initial: Duration.Duration
    readonly max: Duration.Duration
    readonly factor: number
    readonly jitter: boolean
  }
}

/** The shape of the public options, restated here so the internal module does not import the public one. */
export interface Input {
  readonly pollInterval?: Duration.DurationInput | undefined
  readonly batchSize?: number | undefined
  readonly concurrency?: number | undefined
  readonly maxAttempts?: number | undefined
  readonly backoff?: {
    readonly initial?: Duration.DurationInput | undefined
    readonly max?: Duration.DurationInput | undefined
    readonly factor?: number | undefined
    readonly jitter?: boolean | undefined
  } | undefined
}

const atLeastOne = (value: number | undefined, fallback: number): number =>
  value === undefined || !Number.isFinite(value) ? fallback : Math.max(1, Math.floor(value))

export const resolve = (input: Input = {}): Resolved => ({
  pollInterval: Duration.decode(input.pollInterval ?? Duration.seconds(1)),
  batchSize: atLeastOne(input.batchSize, 100),
  concurrency: atLeastOne(input.concurrency, 8),
  maxAttempts: atLeastOne(input.maxAttempts, 10),
  backoff: {
    initial: Duration.decode(input.backoff?.initial ?? Duration.millis(200)),
    max: Duration.decode(input.backoff?.max ?? Duration.seconds(30)),
    factor: Math.max(1, input.backoff?.factor ?? 2),
    jitter: input.backoff?.jitter ?? true
  }
})

/**
 * The delay before the `attempt`-th retry (1-based): exponential, jittered by ±20 %, capped. The cap comes last so
 * the promise "at most `max`" holds with jitter too.
 */
export const backoffDelay = (backoff: Resolved["backoff"], attempt: number): Effect.Effect<Duration.Duration> =>
  Effect.gen(function*() {
    const base = Duration.toMillis(backoff.initial) * Math.pow(backoff.factor, Math.max(0, attempt - 1))
    const jitter = backoff.jitter ? yield* Random.nextRange(0.8, 1.2) : 1
    return Duration.millis(Math.min(Duration.toMillis(backoff.max), Math.round(base * jitter)))
  })

// --- rows ---

const JsonObjectSchema = Schema.Record({ key: Schema.String, value: Schema.Unknown })

const Int8 = Schema.Union(Schema.Number, Schema.NumberFromString)

/** What every selected row must have; a row without it means the table is not ours. */
const RowHead = Schema.Struct({
  id: Schema.String,
  stream: Schema.String,
  seq: Int8,
  attempts: Schema.Number
})
type RowHead = typeof RowHead.Type

// Rows written by the Elixir kit (schema version 1) may spell the option in snake case.
const WriteOptionsColumn = Schema.NullOr(Schema.Struct({
  expectedVersion: Schema.optional(Schema.NullOr(Schema.Number)),
  expected_version: Schema.optional(Schema.NullOr(Schema.Number))
}))

/** What a row must hold to be sent; a row that does not decode is parked, as EventoDB would refuse it too. */
const RowPayload = Schema.Struct({
  type: Schema.String,
  data: JsonObjectSchema,
  metadata: Schema.NullOr(JsonObjectSchema),
  write_options: WriteOptionsColumn
})

interface Row extends RowHead {
  readonly raw: unknown
}

interface Payload {
  readonly message: NewMessage
  readonly expectedVersion: number | undefined
}

const decodeHead = Schema.decodeUnknown(RowHead)
const decodePayload = Schema.decodeUnknownEither(RowPayload)

// Synchronous: it runs once per row on the sender's hot path.
const payloadOf = (row: Row): Either.Either<Payload, string> =>
  Either.match(decodePayload(row.raw), {
    onLeft: (error) =>
      Either.left(
        `outbox row does not decode: ${
          ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => `${issue.path.join(".")}: ${issue.message}`)
            .join("; ")
        }`
      ),
    onRight: (payload) => {
      const metadata: JsonObject | undefined = payload.metadata ?? undefined
      const options = payload.write_options
      const expectedVersion = options?.expectedVersion ?? options?.expected_version ?? undefined
      return Either.right({
        message: metadata === undefined
          ? { type: payload.type, data: payload.data }
          : { type: payload.type, data: payload.data, metadata },
        expectedVersion
      })
    }
  })

const encodeError = Schema.encode(Schema.parseJson(EventoError))

/** `last_error` holds the JSON of the error (readable back with the `EventoError` schema) or a plain message. */
const errorText = (error: EventoError | string): Effect.Effect<string> =>
  typeof error === "string"
    ? Effect.succeed(error)
    : encodeError(error).pipe(Effect.orElseSucceed(() => error.message))

const decodeFailed = (what: string) => (cause: unknown) => new SqlError({ cause, message: `${what} did not decode` })

// --- outcomes ---

/**
 * Why a pass stopped without the rows being at fault: EventoDB unreachable or down, the token refused, or a server
 * that does not know the method or namespace. No row's attempts are counted for these.
 */
export class Halted extends Data.TaggedError("Halted")<{
  readonly reason: "unreachable" | "auth" | "misconfigured"
  readonly error: EventoError
}> {}

type Outcome =
  | { readonly _tag: "Delivered" }
  | { readonly _tag: "Retry"; readonly error: EventoError }
  | { readonly _tag: "Park"; readonly error: EventoError | string }
  | { readonly _tag: "Halt"; readonly halted: Halted }

const delivered: Outcome = { _tag: "Delivered" }
const retry = (error: EventoError): Outcome => ({ _tag: "Retry", error })
const park = (error: EventoError | string): Outcome => ({ _tag: "Park", error })
const halt = (reason: Halted["reason"], error: EventoError): Outcome => ({
  _tag: "Halt",
  halted: new Halted({ reason, error })
})

// --- metrics ---

/** @internal */
export const metrics = {
  sent: Metric.counter("eventodb_outbox_sent_total", { description: "Outbox rows delivered to EventoDB" }),
  parked: Metric.counter("eventodb_outbox_parked_total", { description: "Outbox rows parked after failing" }),
  backlog: Metric.gauge("eventodb_outbox_backlog", { description: "Unsent outbox rows, parked ones included" }),
  parkedNow: Metric.gauge("eventodb_outbox_parked", { description: "Parked outbox rows waiting for an operator" }),
  oldestAge: Metric.gauge("eventodb_outbox_oldest_unsent_age_seconds", {
    description: "Age of the oldest unsent outbox row"
  })
}

// --- statistics ---

/** The backlog of one namespace, read in one statement. */
export interface Stats {
  readonly unsent: number
  readonly parked: number
  readonly retrying: number
  readonly oldestUnsentAt: Option.Option<Date>
  readonly oldestUnsentAge: Option.Option<Duration.Duration>
  /** Time until the earliest row in backoff becomes due. */
  readonly nextDueIn: Option.Option<Duration.Duration>
}

const StatsRow = Schema.Struct({
  unsent: Schema.Number,
  parked: Schema.Number,
  retrying: Schema.Number,
  oldest: Schema.NullOr(Schema.DateFromSelf),
  oldest_age_ms: Schema.NullOr(Schema.Number),
  next_due_ms: Schema.NullOr(Schema.Number)
})

const optionalMillis = (ms: number | null) =>
  Option.map(Option.fromNullable(ms), (n) => Duration.millis(Math.max(0, n)))

export const stats = (namespace: string): Effect.Effect<Stats, SqlError, SqlClient> =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient).withoutTransforms()
    const rows = yield* sql`
      SELECT
        count(*)::int AS unsent,
        (count(*) FILTER (WHERE parked_at IS NOT NULL))::int AS parked,
        (count(*) FILTER (WHERE parked_at IS NULL AND attempts > 0))::int AS retrying,
        min(created_at) AS oldest,
        (extract(epoch FROM now() - min(created_at)) * 1000)::float8 AS oldest_age_ms,
        (extract(epoch FROM min(next_attempt_at) FILTER (
          WHERE parked_at IS NULL AND next_attempt_at > now()
        ) - now()) * 1000)::float8 AS next_due_ms
      FROM evento_outbox
      WHERE namespace = ${namespace}
        AND sent_at IS NULL
    `
    const row = yield* Schema.decodeUnknown(StatsRow)(rows[0]).pipe(Effect.mapError(decodeFailed("outbox statistics")))
    return {
      unsent: row.unsent,
      parked: row.parked,
      retrying: row.retrying,
      oldestUnsentAt: Option.fromNullable(row.oldest),
      oldestUnsentAge: optionalMillis(row.oldest_age_ms),
      nextDueIn: optionalMillis(row.next_due_ms)
    }
  })

// --- operator actions ---

/** The namespaces of the given rows, to wake their senders after an operator action. */
const notify = (sql: SqlClient, namespaces: ReadonlyArray<string>) =>
  Effect.forEach(new Set(namespaces), (namespace) => sql`SELECT pg_notify(${channel}, ${namespace})`, {
    discard: true
  })

const NamespaceRow = Schema.Struct({ namespace: Schema.String })
const decodeNamespaces = Schema.decodeUnknown(Schema.Array(NamespaceRow))

/** Makes unsent rows sendable again now: parked or in backoff, their attempts start over. */
export const requeue = (ids: ReadonlyArray<string>): Effect.Effect<number, SqlError, SqlClient> =>
  Effect.gen(function*() {
    if (ids.length === 0) return 0
    const sql = (yield* SqlClient).withoutTransforms()
    const rows = yield* sql`
      UPDATE evento_outbox
      SET parked_at = NULL, attempts = 0, next_attempt_at = NULL
      WHERE id IN ${sql.in(ids)}
        AND sent_at IS NULL
      RETURNING namespace
    `.pipe(sql.withTransaction)
    const touched = yield* decodeNamespaces(rows).pipe(Effect.mapError(decodeFailed("requeued rows")))
    yield* notify(sql, touched.map((row) => row.namespace))
    return touched.length
  })

/** Deletes parked rows, which lets the rest of their streams go. Unsent rows that are not parked stay. */
export const discard = (ids: ReadonlyArray<string>): Effect.Effect<number, SqlError, SqlClient> =>
  Effect.gen(function*() {
    if (ids.length === 0) return 0
    const sql = (yield* SqlClient).withoutTransforms()
    const rows = yield* sql`
      DELETE FROM evento_outbox
      WHERE id IN ${sql.in(ids)}
        AND sent_at IS NULL
        AND parked_at IS NOT NULL
      RETURNING namespace
    `
    const touched = yield* decodeNamespaces(rows).pipe(Effect.mapError(decodeFailed("discarded rows")))
    yield* notify(sql, touched.map((row) => row.namespace))
    return touched.length
  })

const ParkedSqlRow = Schema.Struct({
  id: Schema.String,
  stream: Schema.String,
  type: Schema.String,
  seq: Int8,
  attempts: Schema.Number,
  last_error: Schema.NullOr(Schema.String),
  created_at: Schema.DateFromSelf,
  parked_at: Schema.DateFromSelf
})

const decodeStoredError = Schema.decodeUnknownOption(Schema.parseJson(EventoError))

export const parked = (
  namespace: string,
  limit: number
): Effect.Effect<ReadonlyArray<ParkedRow>, SqlError, SqlClient> =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient).withoutTransforms()
    const rows = yield* sql`
      SELECT id, stream, type, seq, attempts, last_error, created_at, parked_at
      FROM evento_outbox
      WHERE namespace = ${namespace}
        AND sent_at IS NULL
        AND parked_at IS NOT NULL
      ORDER BY seq
      LIMIT ${Math.max(1, Math.floor(limit))}
    `
    const decoded = yield* Schema.decodeUnknown(Schema.Array(ParkedSqlRow))(rows).pipe(
      Effect.mapError(decodeFailed("parked rows"))
    )
    return decoded.map((row): ParkedRow => ({
      id: row.id,
      stream: row.stream,
      type: row.type,
      seq: row.seq,
      attempts: row.attempts,
      lastError: Option.fromNullable(row.last_error),
      error: row.last_error === null ? Option.none() : decodeStoredError(row.last_error),
      createdAt: row.created_at,
      parkedAt: row.parked_at
    }))
  })

// --- the sender ---

/** How long an interrupted sender waits for its last marks before it lets go. */
const shutdownGrace = Duration.millis(500)

/** One sender bound to a client, a database and options. */
export interface Sender {
  readonly namespace: string
  /** Sends until nothing is sendable; the count delivered. Fails with `Halted` when EventoDB is not usable. */
  readonly pass: Effect.Effect<number, Halted | SqlError>
  readonly stats: Effect.Effect<Stats, SqlError>
  readonly options: Resolved
}

export const make = (input?: Input): Effect.Effect<Sender, never, EventoClient | SqlClient> =>
  Effect.gen(function*() {
    const client = yield* EventoClient
    const sql = (yield* SqlClient).withoutTransforms()
    const options = resolve(input)
    const namespace = client.namespace
    const sentCounter = metrics.sent.pipe(Metric.tagged("namespace", namespace))
    const parkedCounter = metrics.parked.pipe(Metric.tagged("namespace", namespace))

    // The head unsent row of each stream, if it is due and unparked, and the rows behind it, oldest first.
    // A row is held back while any earlier unsent row of its stream is parked or waiting for its backoff, so a
    // failing row blocks its own stream only and never fills the batch (LESSONS.md 4 and 5).
    // The blocked streams are collected once per query (MATERIALIZED): left to itself, the planner may rescan the
    // unsent rows for every candidate when the table has no statistics yet. `excluded` holds rows being sent, or
    // delivered and not marked yet, which must not be picked again.
    const select = (excluded: ReadonlyArray<string>) =>
      sql`
      WITH blocked AS MATERIALIZED (
        SELECT stream, min(seq) AS seq
        FROM evento_outbox
        WHERE namespace = ${namespace}
          AND sent_at IS NULL
          AND (parked_at IS NOT NULL OR next_attempt_at > now())
        GROUP BY stream
      )
      SELECT o.id, o.stream, o.type, o.data, o.metadata, o.write_options, o.seq, o.attempts
      FROM evento_outbox o
      WHERE o.namespace = ${namespace}
        AND o.sent_at IS NULL
        AND o.parked_at IS NULL
        AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= now())
        AND NOT EXISTS (SELECT 1 FROM blocked b WHERE b.stream = o.stream AND b.seq < o.seq)
        ${excluded.length === 0 ? sql.literal("") : sql`AND o.id NOT IN ${sql.in(excluded)}`}
      ORDER BY o.seq
      LIMIT ${options.batchSize}
    `.pipe(
        Effect.flatMap((rows) =>
          Effect.forEach(rows, (raw) =>
            decodeHead(raw).pipe(
              Effect.map((head): Row => ({ ...head, raw })),
              Effect.mapError(decodeFailed("outbox row"))
            ))
        )
      )

    const markSent = (ids: ReadonlyArray<string>) =>
      ids.length === 0 ? Effect.void : sql`
          UPDATE evento_outbox
          SET sent_at = now(), next_attempt_at = NULL
          WHERE id IN ${sql.in(ids)}
            AND sent_at IS NULL
        `.pipe(Effect.asVoid)

    const recordRetry = (row: Row, error: EventoError) =>
      Effect.gen(function*() {
        const attempts = row.attempts + 1
        const text = yield* errorText(error)
        if (attempts >= options.maxAttempts) return yield* recordPark(row, text, attempts)
        const delay = yield* backoffDelay(options.backoff, attempts)
        yield* sql`
          UPDATE evento_outbox
          SET attempts = ${attempts},
              last_error = ${text},
              next_attempt_at = now() + ${Duration.toMillis(delay)} * interval '1 millisecond'
          WHERE id = ${row.id}
        `
        yield* Effect.logWarning("outbox row failed, will retry").pipe(
          Effect.annotateLogs({ outboxId: row.id, stream: row.stream, attempts, error: error._tag })
        )
      })

    const recordPark = (row: Row, text: string, attempts: number) =>
      Effect.gen(function*() {
        yield* sql`
          UPDATE evento_outbox
          SET attempts = ${attempts}, last_error = ${text}, parked_at = now(), next_attempt_at = NULL
          WHERE id = ${row.id}
        `
        yield* Metric.increment(parkedCounter)
        yield* Effect.logError("outbox row parked").pipe(
          Effect.annotateLogs({ outboxId: row.id, stream: row.stream, attempts, lastError: text })
        )
      })

    // The row's error is recorded for operators, but a halt is nobody's fault: attempts stay as they are.
    const recordHalt = (row: Row, halted: Halted) =>
      Effect.flatMap(errorText(halted.error), (text) =>
        sql`UPDATE evento_outbox SET last_error = ${text} WHERE id = ${row.id}`)

    /** Is EventoDB answering at all? A read of the row's stream tells a broken row from a broken server. */
    const probe = (row: Row): Effect.Effect<Option.Option<Outcome>> =>
      client.streamVersion(row.stream).pipe(
        Effect.as(Option.none<Outcome>()),
        Effect.catchAll((error) =>
          Effect.succeed(Option.some(classifyHalt(error)))
        )
      )

    /** A version conflict may be our own earlier write, accepted just before a crash: look at the slot it wanted. */
    const explainConflict = (row: Row, expectedVersion: number | undefined, error: EventoError) =>
      expectedVersion === undefined
        ? Effect.succeed(park(error))
        : client.streamGet(row.stream, { position: expectedVersion + 1, batchSize: 1 }).pipe(
          Effect.map((messages) => {
            const found = messages[0]
            return found !== undefined && found.id.toLowerCase() === row.id.toLowerCase() ? delivered : park(error)
          }),
          Effect.catchAll((readError) => Effect.succeed(classifyHalt(readError)))
        )

    const classifyHalt = (error: EventoError): Outcome => {
      switch (error._tag) {
        case "EventoAuthError":
          return halt("auth", error)
        case "MethodNotFound":
        case "NamespaceNotFound":
        case "NamespaceExists":
          return halt("misconfigured", error)
        default:
          return halt("unreachable", error)
      }
    }

    const classify = (row: Row, payload: Payload, error: EventoError): Effect.Effect<Outcome> => {
      switch (error._tag) {
        case "DuplicateMessageId":
          return Effect.succeed(delivered)
        case "StreamVersionConflict":
          return explainConflict(row, payload.expectedVersion, error)
        case "InvalidRequest":
          return Effect.succeed(park(error))
        case "EventoServerError":
        case "EventoProtocolError":
        case "EventoTimeout":
          // A 5xx, a garbled answer or a write that never answers counts against the row only while the server
          // otherwise works: a row that alone times out (a huge payload, a hot stream) is retried and parked like
          // any failing row instead of halting every stream behind it.
          return Effect.map(probe(row), Option.getOrElse(() => retry(error)))
        case "EventoUnavailable":
        case "EventoAuthError":
        case "MethodNotFound":
        case "NamespaceNotFound":
        case "NamespaceExists":
          return Effect.succeed(classifyHalt(error))
      }
    }

    const send = (row: Row): Effect.Effect<Outcome> => {
      const payload = payloadOf(row)
      if (Either.isLeft(payload)) return Effect.succeed(park(payload.left))
      const { expectedVersion, message } = payload.right
      const writeOptions: WriteOptions = expectedVersion === undefined
        ? { id: row.id }
        : { id: row.id, expectedVersion }
      return client.streamWrite(row.stream, message, writeOptions).pipe(
        Effect.as(delivered),
        Effect.catchAll((error) => classify(row, payload.right, error)),
        Effect.withSpan("OutboxSender.send", {
          attributes: { "eventodb.outbox_id": row.id, "eventodb.stream": row.stream, "eventodb.namespace": namespace },
          captureStackTrace: false
        })
      )
    }

    /**
     * Sends one stream's rows in order and stops at the first that is not delivered. Delivered ids go to
     * `done`, to be marked in one statement for the whole batch.
     */
    const sendGroup = (rows: ReadonlyArray<Row>, done: Array<string>, stop: { halted: Option.Option<Halted> }) =>
      Effect.gen(function*() {
        for (const row of rows) {
          if (Option.isSome(stop.halted)) return
          const outcome = yield* send(row)
          switch (outcome._tag) {
            case "Delivered":
              done.push(row.id)
              continue
            case "Retry":
              return yield* recordRetry(row, outcome.error)
            case "Park":
              return yield* Effect.flatMap(errorText(outcome.error), (text) => recordPark(row, text, row.attempts + 1))
            case "Halt":
              // The first halt wins; the other streams stop before their next row.
              if (Option.isNone(stop.halted)) stop.halted = Option.some(outcome.halted)
              return yield* recordHalt(row, outcome.halted)
          }
        }
      })

    /** Sends one batch: each stream's rows in order, the streams in parallel. */
    const sendBatch = (rows: ReadonlyArray<Row>, done: Array<string>) =>
      Effect.suspend(() => {
        const groups = new Map<string, Array<Row>>()
        for (const row of rows) {
          const group = groups.get(row.stream)
          if (group === undefined) groups.set(row.stream, [row])
          else group.push(row)
        }
        const stop = { halted: Option.none<Halted>() }
        return Effect.forEach(groups.values(), (group) => sendGroup(group, done, stop), {
          concurrency: options.concurrency,
          discard: true
        }).pipe(Effect.map(() => stop.halted))
      })

    /**
     * Batches run one after the other, but the database work between them is hidden behind the sends: while a
     * batch is being sent, the previous batch is marked and the next one selected, excluding the rows in flight.
     * That next batch is only used when every row of the current one was delivered; otherwise a later row of a
     * failing stream could be in it, so it is selected again once the failures are recorded.
     */
    const pass = Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        let unmarked: Array<string> = []
        let sent = 0
        const flush = Effect.suspend(() => {
          const ids = unmarked
          unmarked = []
          return markSent(ids).pipe(Effect.zipRight(Metric.incrementBy(sentCounter, ids.length)))
        })

        // After an interruption the database may be what failed (a lost lock connection often means that): mark
        // what we can, detached, and stop waiting after a moment so shutdown and failover are never held up.
        // `disconnect` lets the timeout return without waiting for the interrupted marks to wind down. The timeout
        // runs the flush in a fiber of its own, which the pass's interruption does not reach; it is made
        // interruptible there so that the timeout can stop it (the pass runs under an uninterruptible mask).
        const flushDetached = flush.pipe(
          Effect.disconnect,
          Effect.interruptible,
          Effect.timeout(shutdownGrace),
          Effect.ignore
        )

        const run = Effect.gen(function*() {
          let rows = yield* restore(select([]))
          while (rows.length > 0) {
            const current = rows
            const ahead = yield* Effect.fork(restore(flush.pipe(Effect.zipRight(select(current.map((row) => row.id))))))
            const done: Array<string> = []
            const sending = yield* Effect.exit(restore(sendBatch(current, done)))
            unmarked.push(...done)
            sent += done.length
            if (Exit.isFailure(sending)) {
              yield* Fiber.interrupt(ahead)
              return yield* Effect.failCause(sending.cause)
            }
            const next = yield* restore(Fiber.join(ahead)).pipe(Effect.onInterrupt(() => Fiber.interrupt(ahead)))
            if (Option.isSome(sending.value)) return yield* sending.value.value
            if (done.length === current.length) {
              rows = next
            } else {
              yield* restore(flush)
              rows = yield* restore(select([]))
            }
          }
          return sent
        })

        // Whatever ends the pass (nothing left, a halt, a database error, an interruption), what EventoDB accepted
        // is marked if the database lets us: a row left unmarked is sent again and recognised by its message id.
        const exit = yield* Effect.exit(run)
        if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) {
          yield* flushDetached
          return yield* Effect.failCause(exit.cause)
        }
        const flushed = yield* Effect.exit(restore(flush))
        if (Exit.isFailure(exit)) return yield* Effect.failCause(exit.cause)
        if (Exit.isFailure(flushed)) return yield* Effect.failCause(flushed.cause)
        return exit.value
      })
    )

    const namespaceStats = stats(namespace).pipe(
      Effect.provideService(SqlClient, sql),
      Effect.tap((s) =>
        Effect.all([
          Metric.set(metrics.backlog.pipe(Metric.tagged("namespace", namespace)), s.unsent),
          Metric.set(metrics.parkedNow.pipe(Metric.tagged("namespace", namespace)), s.parked),
          Metric.set(
            metrics.oldestAge.pipe(Metric.tagged("namespace", namespace)),
            Option.match(s.oldestUnsentAge, { onNone: () => 0, onSome: Duration.toSeconds })
          )
        ], { discard: true })
      )
    )

    return { namespace, pass, stats: namespaceStats, options }
  })

// --- the loop ---

const logAnnotations = (namespace: string, fiber: string) =>
  Effect.annotateLogs({ package: "eventodb-kit", module: "OutboxSender", fiber, namespace })

/** How long the LISTEN connection may stay silent before a notification is sent through it to check it. */
const listenCheck = Duration.seconds(3)

/** How long that check waits for its notification to come back before listening again. */
const listenPingTimeout = Duration.seconds(2)

/** Why a LISTEN session ended; each one is followed by a new session after a delay. */
class ListenLost extends Data.TaggedError("ListenLost")<{
  readonly reason: "ended" | "silent"
}> {}

/**
 * One LISTEN session: offers a wake-up for every notification about this namespace, and ends when the stream fails
 * or ends, or when a notification sent to ourselves does not come back. The last is the common case: a LISTEN
 * connection whose backend was terminated neither fails nor ends the stream (LESSONS.md 26). The self-notification
 * wakes the sender like any other, which costs one empty pass.
 */
const listenSession = (pg: PgClient, sql: SqlClient, namespace: string, wake: Queue.Queue<void>) =>
  Effect.gen(function*() {
    const heard = yield* Queue.sliding<void>(1)
    const receive = pg.listen(channel).pipe(
      Stream.filter((payload) => payload === namespace),
      Stream.runForEach(() => Effect.zipRight(Queue.offer(heard, undefined), Queue.offer(wake, undefined))),
      Effect.zipRight(Effect.fail(new ListenLost({ reason: "ended" })))
    )
    const check = Effect.gen(function*() {
      yield* Queue.takeAll(heard)
      yield* Effect.sleep(listenCheck)
      if (yield* Queue.isEmpty(heard)) {
        yield* sql`SELECT pg_notify(${channel}, ${namespace})`
        yield* Queue.take(heard).pipe(
          Effect.timeoutFail({ duration: listenPingTimeout, onTimeout: () => new ListenLost({ reason: "silent" }) })
        )
      }
    }).pipe(Effect.forever)
    // Notifications sent while no session listened are lost: look for rows now rather than at the next poll.
    yield* Queue.offer(wake, undefined)
    return yield* Effect.raceFirst(receive, check)
  })

/** Listens for notifications about this namespace for as long as the sender runs, in a new session after each loss. */
const listen = (namespace: string, wake: Queue.Queue<void>) =>
  Effect.serviceOption(PgClient).pipe(
    Effect.flatMap(Option.match({
      onNone: () => Effect.logDebug("no PgClient, polling only"),
      onSome: (pg) =>
        Effect.flatMap(SqlClient, (sql) =>
          listenSession(pg, sql, namespace, wake).pipe(
            Effect.tapErrorCause((cause) =>
              Cause.isFailType(cause) && cause.error._tag === "ListenLost"
                ? Effect.logWarning("outbox LISTEN lost, will listen again").pipe(
                  Effect.annotateLogs({ reason: cause.error.reason })
                )
                : Effect.logWarning("outbox LISTEN failed, will listen again", cause)
            ),
            Effect.retry(Schedule.exponential("1 second").pipe(Schedule.union(Schedule.spaced("30 seconds"))))
          ))
    }))
  )

/** Runs passes forever: on a notification, on every poll, when a row's backoff ends, after a halt's backoff. */
export const run = (input?: Input): Effect.Effect<never, never, EventoClient | SqlClient> =>
  Effect.gen(function*() {
    const sender = yield* make(input)
    const { backoff, pollInterval } = sender.options
    const wake = yield* Queue.sliding<void>(1)
    const failures = yield* Ref.make(0)

    yield* listen(sender.namespace, wake).pipe(
      logAnnotations(sender.namespace, "listen"),
      Effect.interruptible,
      Effect.forkScoped
    )
    yield* Queue.offer(wake, undefined).pipe(
      Effect.repeat(Schedule.spaced(pollInterval)),
      Effect.interruptible,
      Effect.forkScoped
    )

    // Consecutive passes that ended without the rows being at fault back off together, and start over from the
    // first delay after a pass that ends normally.
    const backOff = (log: Effect.Effect<void>) =>
      Effect.gen(function*() {
        const count = yield* Ref.updateAndGet(failures, (n) => n + 1)
        const delay = yield* backoffDelay(backoff, count)
        yield* log.pipe(Effect.annotateLogs({ retryInMillis: Duration.toMillis(delay) }))
        yield* Effect.sleep(delay)
        yield* Queue.offer(wake, undefined)
      })

    const afterHalt = (halted: Halted) =>
      backOff(
        // A refused token is an operator's problem (a rotation, a deleted namespace): say so loudly, park nothing.
        (halted.reason === "unreachable"
          ? Effect.logWarning("EventoDB unavailable, outbox sender backing off")
          : Effect.logError("outbox sender paused")).pipe(
            Effect.annotateLogs({ reason: halted.reason, error: halted.error._tag, errorMessage: halted.error.message })
          )
      )

    const afterSqlError = (error: SqlError) =>
      backOff(Effect.logWarning("outbox sender database error, backing off", error))

    const step = Effect.gen(function*() {
      const due = yield* sender.stats.pipe(
        Effect.map((s) => s.nextDueIn),
        Effect.orElseSucceed(() => Option.none<Duration.Duration>())
      )
      yield* Option.match(due, {
        onNone: () => Queue.take(wake),
        onSome: (delay) => Effect.raceFirst(Queue.take(wake), Effect.sleep(delay))
      })
      yield* sender.pass.pipe(
        Effect.tap((sent) =>
          sent > 0 ? Effect.logDebug("outbox rows sent").pipe(Effect.annotateLogs({ sent })) : Effect.void
        ),
        Effect.zipRight(Ref.set(failures, 0)),
        Effect.catchTags({ Halted: afterHalt, SqlError: afterSqlError })
      )
    })

    return yield* step.pipe(
      Effect.catchAllCause((cause) => Effect.logError("outbox sender step failed", cause)),
      Effect.forever,
      logAnnotations(sender.namespace, "sender")
    )
  }).pipe(Effect.scoped)
