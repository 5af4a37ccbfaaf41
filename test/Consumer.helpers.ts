/**
 * Shared set-up of the Consumer test files: a migrated database with the SQL stores, an EventoDB namespace, and
 * small tools to write messages, record what a handler saw and wait for it.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as PgClient from "@effect/sql-pg/PgClient"
import { SqlClient } from "@effect/sql/SqlClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import type * as Scope from "effect/Scope"
import { EventoClient, type Message } from "../src/EventoClient.js"
import * as EventoClientModule from "../src/EventoClient.js"
import * as FaultProxy from "../src/FaultProxy.js"
import * as Idempotency from "../src/Idempotency.js"
import * as Migrations from "../src/Migrations.js"
import * as PositionStore from "../src/PositionStore.js"
import * as EventoTest from "./support/EventoTest.js"
import * as PgTest from "./support/PgTest.js"

/** A migrated database (one per file) with `PositionStore.layer` and `Idempotency.layer` on it. */
export const Stores: Layer.Layer<
  PositionStore.PositionStore | Idempotency.Idempotency | SqlClient | PgClient.PgClient
> = Layer.mergeAll(PositionStore.layer, Idempotency.layer).pipe(
  Layer.provideMerge(Layer.effectDiscard(Effect.orDie(Migrations.up())).pipe(Layer.provideMerge(PgTest.layer)))
)

/** Everything a consumer needs, on a fresh namespace of the target EventoDB. */
export const TestLayer = Layer.mergeAll(Stores, EventoTest.layer).pipe(
  // Retries, give-ups and outages are what these tests provoke: their logs would bury the test output. Tests that
  // look at logs add a logger of their own.
  Layer.provideMerge(Logger.replace(Logger.defaultLogger, Logger.none))
)

let counter = 0

/** A category name of its own for each test (letters and digits: a `-` would end the category). */
export const freshCategory = (prefix: string): string =>
  `${prefix}${(counter++).toString(36)}x${Math.random().toString(36).slice(2, 8)}`

/** Writes `count` messages, cycling over `streams` stream ids; yields their global positions in write order. */
export const writeMessages = (
  category: string,
  count: number,
  options: { readonly streams?: number; readonly type?: string; readonly from?: number } = {}
): Effect.Effect<ReadonlyArray<number>, never, EventoClient> =>
  Effect.flatMap(
    EventoClient,
    (client) =>
      Effect.forEach(Array.from({ length: count }, (_, i) => i + (options.from ?? 0)), (i) =>
        client.streamWrite(`${category}-${i % (options.streams ?? 3)}`, {
          type: options.type ?? "Happened",
          data: { n: i }
        }).pipe(
          Effect.map((result) =>
            result.globalPosition
          ),
          Effect.orDie
        ))
  )

/** What a handler saw, in order. */
export interface Seen {
  readonly messages: Array<Message>
  readonly handler: (message: Message) => Effect.Effect<void>
}

export const recorder = (): Seen => {
  const messages: Array<Message> = []
  return { messages, handler: (message) => Effect.sync(() => void messages.push(message)) }
}

/** Polls `check` every 10 ms until it holds; dies with `what` after `timeout`. */
export const eventually = <E, R>(
  what: string,
  check: Effect.Effect<boolean, E, R>,
  timeout: Duration.DurationInput = "15 seconds"
): Effect.Effect<void, E, R> =>
  Effect.gen(function*() {
    while (!(yield* check)) yield* Effect.sleep("10 millis")
  }).pipe(
    Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error(`timed out waiting: ${what}`) }),
    Effect.catchIf((error): error is Error => error instanceof Error, (error) => Effect.die(error))
  )

/** Polls a plain condition. */
export const until = (what: string, condition: () => boolean, timeout?: Duration.DurationInput) =>
  eventually(what, Effect.sync(condition), timeout)

/** Global positions of `messages`. */
export const positionsOf = (messages: ReadonlyArray<Message>): Array<number> =>
  messages.map((message) => message.globalPosition)

/** True when the array has no repeated value. */
export const distinct = <A>(values: ReadonlyArray<A>): boolean => new Set(values).size === values.length

/** The saved position of a consumer, as a plain number or undefined. */
export const savedPosition = (category: string, consumerId: string) =>
  Effect.gen(function*() {
    const client = yield* EventoClient
    const store = yield* PositionStore.PositionStore
    const saved = yield* store.load({ namespace: client.namespace, category, consumerId })
    return saved._tag === "Some" ? saved.value : undefined
  }).pipe(Effect.orDie)

/** Rows of a table, for assertions. */
export const rows = <A extends object>(query: string) =>
  Effect.flatMap(SqlClient, (sql) => sql.unsafe<A>(query)).pipe(Effect.orDie)

/**
 * A fresh namespace with two clients on it: `direct` to the target, and `client` through a `FaultProxy` in front of
 * the target.
 */
export const proxied: Effect.Effect<
  {
    readonly proxy: FaultProxy.FaultProxy.Service
    readonly client: EventoClientModule.EventoClient.Service
    readonly direct: EventoClientModule.EventoClient.Service
  },
  never,
  EventoTest.EventoTarget | HttpClient.HttpClient | Scope.Scope
> = Effect.gen(function*() {
  const target = yield* EventoTest.EventoTarget
  const { token } = yield* EventoTest.freshNamespace
  const proxy = yield* FaultProxy.make({ upstream: target.url })
  const client = yield* EventoClientModule.make({ url: proxy.url, token }).pipe(Effect.orDie)
  const direct = yield* EventoClientModule.make({ url: target.url, token }).pipe(Effect.orDie)
  return { proxy, client, direct }
})

/** Duration in milliseconds, for readable assertions. */
export const ms = (duration: Duration.DurationInput): number => Duration.toMillis(Duration.decode(duration))
