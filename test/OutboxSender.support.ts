/**
 * Shared set-up of the OutboxSender test files: a migrated database per file, the target EventoDB, and per test a
 * namespace of its own reached through a `FaultProxy`, plus tools to read the outbox and the streams back.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as PgClient from "@effect/sql-pg/PgClient"
import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { EventoClient } from "../src/EventoClient.js"
import * as EventoClientModule from "../src/EventoClient.js"
import * as FaultProxy from "../src/FaultProxy.js"
import * as Migrations from "../src/Migrations.js"
import * as Outbox from "../src/Outbox.js"
import * as EventoTest from "./support/EventoTest.js"
import * as PgTest from "./support/PgTest.js"

/** A migrated database (one per file), the target EventoDB and an HTTP client. */
export const TestLayer: Layer.Layer<
  SqlClient | PgClient.PgClient | EventoTest.EventoTarget | HttpClient.HttpClient
> = Layer.mergeAll(
  Layer.effectDiscard(Effect.orDie(Migrations.up())).pipe(Layer.provideMerge(PgTest.layer)),
  EventoTest.layerTarget,
  NodeHttpClient.layerUndici
)

/** One test's world: a fresh namespace, a proxy in front of the server, and clients on both sides of it. */
export interface Env {
  readonly namespace: string
  readonly token: Redacted.Redacted<string>
  readonly proxy: FaultProxy.FaultProxy.Service
  /** Through the proxy: what the sender uses. */
  readonly client: EventoClient.Service
  /** Straight to the server: for checks and for simulating what a crashed sender left behind. */
  readonly direct: EventoClient.Service
  /** Provides `EventoClient` (the proxied one) and `Outbox` for this namespace. */
  readonly provide: <A, E, R>(
    effect: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E, Exclude<R, EventoClient | Outbox.Outbox> | SqlClient>
}

export const makeEnv = (
  options: { readonly timeout?: Duration.DurationInput } = {}
): Effect.Effect<Env, never, Scope.Scope | EventoTest.EventoTarget | HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const target = yield* EventoTest.EventoTarget
    const { namespace, token } = yield* EventoTest.freshNamespace
    const proxy = yield* FaultProxy.make({ upstream: target.url })
    const client = yield* EventoClientModule.make({ url: proxy.url, token, timeout: options.timeout ?? "2 seconds" })
      .pipe(Effect.orDie)
    const direct = yield* EventoClientModule.make({ url: target.url, token }).pipe(Effect.orDie)
    const services = Layer.merge(Layer.succeed(EventoClient, client), Outbox.layer({ namespace }).pipe(Layer.orDie))
    return {
      namespace,
      token,
      proxy,
      client,
      direct,
      provide: (effect) => Effect.provide(effect, services)
    }
  })

/** An outbox row as the tests look at it. */
export interface Row {
  readonly id: string
  readonly stream: string
  readonly seq: number
  readonly sent: boolean
  readonly attempts: number
  readonly parked: boolean
  readonly last_error: string | null
  readonly next_attempt_at: Date | null
}

export const rowsOf = (namespace: string): Effect.Effect<ReadonlyArray<Row>, SqlError, SqlClient> =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<Row>`
      SELECT id, stream, seq::int AS seq, sent_at IS NOT NULL AS sent, attempts, parked_at IS NOT NULL AS parked,
        last_error, next_attempt_at
      FROM evento_outbox
      WHERE namespace = ${namespace}
      ORDER BY seq
    `)

export const rowOf = (id: string): Effect.Effect<Row, SqlError, SqlClient> =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<Row>`
      SELECT id, stream, seq::int AS seq, sent_at IS NOT NULL AS sent, attempts, parked_at IS NOT NULL AS parked,
        last_error, next_attempt_at
      FROM evento_outbox
      WHERE id = ${id}
    `.pipe(
      Effect.flatMap((rows) =>
        rows[0] === undefined ? Effect.dieMessage(`no outbox row ${id}`) : Effect.succeed(rows[0])
      )
    ))

/** The message ids of a stream, in stream order. */
export const idsIn = (client: EventoClient.Service, stream: string): Effect.Effect<ReadonlyArray<string>> =>
  client.streamGet(stream, { batchSize: -1 }).pipe(
    Effect.map((messages) => messages.map((message) => message.id)),
    Effect.orDie
  )

/** Polls `check` until it holds; dies with `what` after `timeout`. */
export const eventually = <E, R>(
  what: string,
  check: Effect.Effect<boolean, E, R>,
  timeout: Duration.DurationInput = "20 seconds",
  interval: Duration.DurationInput = "25 millis"
): Effect.Effect<void, E, R> =>
  Effect.gen(function*() {
    const deadline = Date.now() + Duration.toMillis(timeout)
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`timed out waiting until ${what}`)
      yield* Effect.sleep(interval)
    }
  })

/** True once every row of the namespace is sent. */
export const allSent = (namespace: string): Effect.Effect<boolean, SqlError, SqlClient> =>
  Effect.map(rowsOf(namespace), (rows) => rows.length > 0 && rows.every((row) => row.sent))

/**
 * Each stream of the outbox holds in EventoDB exactly its rows' ids in `seq` order: none missing, none twice, none
 * foreign. Yields the mismatches (empty when all is well).
 */
export const mismatches = (
  namespace: string,
  client: EventoClient.Service
): Effect.Effect<ReadonlyArray<string>, SqlError, SqlClient> =>
  Effect.gen(function*() {
    const rows = yield* rowsOf(namespace)
    const expected = new Map<string, Array<string>>()
    for (const row of rows) expected.set(row.stream, [...(expected.get(row.stream) ?? []), row.id])
    const problems: Array<string> = []
    yield* Effect.forEach(expected, ([stream, ids]) =>
      Effect.map(idsIn(client, stream), (actual) => {
        if (actual.join(",") !== ids.join(",")) {
          problems.push(
            `${stream}: expected ${ids.length} [${ids.join(",")}], got ${actual.length} [${actual.join(",")}]`
          )
        }
      }), { concurrency: 8, discard: true })
    return problems
  })

let counter = 0

/** A stream category of its own for each test (letters and digits only). */
export const freshCategory = (prefix: string): string =>
  `${prefix}${(counter++).toString(36)}x${Math.random().toString(36).slice(2, 7)}`

/** Options that keep tests quick: short polls and backoffs. */
export const quick = {
  pollInterval: "100 millis",
  backoff: { initial: "20 millis", max: "200 millis" }
} as const
