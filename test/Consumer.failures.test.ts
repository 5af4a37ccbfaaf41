import { SqlClient } from "@effect/sql/SqlClient"
import { assert, layer } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { randomUUID } from "node:crypto"
import * as Consumer from "../src/Consumer.js"
import { EventoClient, type Message } from "../src/EventoClient.js"
import * as Idempotency from "../src/Idempotency.js"
import * as Singleton from "../src/Singleton.js"
import {
  eventually,
  freshCategory,
  positionsOf,
  recorder,
  rows,
  savedPosition,
  TestLayer,
  until,
  writeMessages
} from "./Consumer.helpers.js"

const fast = { attempts: 3, delay: "5 millis" } as const

/** The typed failure of an exit, if it failed with one. */
const failureOf = <A, E>(exit: Exit.Exit<A, E>): E | undefined =>
  Exit.isFailure(exit)
    ? Cause.failureOption(exit.cause).pipe((option) => option._tag === "Some" ? option.value : undefined)
    : undefined

/** A table the handlers write to, to see which effects committed. */
const effectsTable = (name: string) =>
  Effect.flatMap(SqlClient, (sql) => sql.unsafe(`CREATE TABLE ${name} (event_id uuid NOT NULL, n integer NOT NULL)`))
    .pipe(Effect.orDie)

const countsBy = (table: string) =>
  rows<{ n: number; count: string }>(`SELECT n, count(*)::text AS count FROM ${table} GROUP BY n ORDER BY n`).pipe(
    Effect.map((result) => result.map((row) => [row.n, Number(row.count)]))
  )

const insertEffect = (table: string, message: Message) =>
  Effect.flatMap(
    SqlClient,
    (sql) => sql.unsafe(`INSERT INTO ${table} (event_id, n) VALUES ($1, $2)`, [message.id, Number(message.data.n)])
  )

layer(TestLayer, { excludeTestServices: true, timeout: "120 seconds" })("Consumer failures", (it) => {
  it.scoped("stops on a handler that keeps failing: retried, named, position before it, nothing skipped", () =>
    Effect.gen(function*() {
      const category = freshCategory("stop")
      const written = yield* writeMessages(category, 5)
      const seen = recorder()
      let calls = 0
      const failing = (message: Message) =>
        message.data.n === 2
          ? Effect.sync(() => calls++).pipe(Effect.zipRight(Effect.fail("no good" as const)))
          : seen.handler(message)

      const exit = yield* Effect.exit(Consumer.run({ category, consumerId: "c", retry: fast, handler: failing }))
      const failure = failureOf(exit)
      assert.ok(failure instanceof Consumer.HandlerFailed)
      const third = yield* Effect.orDie((yield* EventoClient).categoryGet(category, { position: written[2]! }))
      assert.strictEqual(failure.messageId, third[0]!.id)
      assert.strictEqual(failure.stream, `${category}-2`)
      assert.strictEqual(failure.globalPosition, written[2])
      assert.strictEqual(failure.attempts, 3)
      assert.strictEqual(failure.cause, "no good")
      assert.strictEqual(calls, 3)
      assert.deepStrictEqual(positionsOf(seen.messages), written.slice(0, 2))
      assert.strictEqual(yield* savedPosition(category, "c"), written[1])

      // Fixed and restarted, it picks up at the failed message.
      const fiber = yield* Effect.forkScoped(Consumer.run({ category, consumerId: "c", handler: seen.handler }))
      yield* until("all handled", () => seen.messages.length >= 5)
      yield* Effect.sleep("200 millis")
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(positionsOf(seen.messages), written)
    }))

  it.scoped("stops in transactional mode with the position before the failing message", () =>
    Effect.gen(function*() {
      const category = freshCategory("txstop")
      yield* effectsTable(`${category}_effects`)
      const written = yield* writeMessages(category, 4)
      const handler = (message: Message) =>
        insertEffect(`${category}_effects`, message).pipe(
          Effect.zipRight(message.data.n === 2 ? Effect.fail("no good") : Effect.void)
        )

      const exit = yield* Effect.exit(
        Consumer.run({ category, consumerId: "c", retry: fast, transactional: true, handler })
      )
      assert.strictEqual((failureOf(exit) as Consumer.HandlerFailed).globalPosition, written[2])
      assert.strictEqual(yield* savedPosition(category, "c"), written[1])
      // The failing message's own writes were rolled back with each attempt.
      assert.deepStrictEqual(yield* countsBy(`${category}_effects`), [[0, 1], [1, 1]])
    }))

  it.scoped("parks a message that keeps failing and goes on with the rest", () =>
    Effect.gen(function*() {
      for (const transactional of [false, true]) {
        const category = freshCategory(transactional ? "txpark" : "park")
        const written = yield* writeMessages(category, 5)
        const seen = recorder()
        const handler = (message: Message) =>
          message.data.n === 2 ? Effect.die(new Error("poison")) : seen.handler(message)

        const fiber = yield* Effect.forkScoped(
          Consumer.run({ category, consumerId: "c", retry: fast, onFailure: "park", transactional, handler })
        )
        yield* until("the rest handled", () => seen.messages.length >= 4)
        yield* eventually("position at the end", Effect.map(savedPosition(category, "c"), (p) => p === written[4]))
        yield* Fiber.interrupt(fiber)

        assert.deepStrictEqual(positionsOf(seen.messages), [0, 1, 3, 4].map((i) => written[i]!))
        const parked = yield* rows<
          { global_position: string; stream: string; type: string; attempts: number; error: string; data: unknown }
        >(
          `SELECT global_position::text, stream, type, attempts, error, data FROM evento_parked_messages
           WHERE category = '${category}' AND consumer_id = 'c'`
        )
        assert.strictEqual(parked.length, 1)
        assert.strictEqual(Number(parked[0]!.global_position), written[2])
        assert.strictEqual(parked[0]!.stream, `${category}-2`)
        assert.strictEqual(parked[0]!.type, "Happened")
        assert.strictEqual(parked[0]!.attempts, 3)
        assert.match(parked[0]!.error, /poison/)
        assert.deepStrictEqual(parked[0]!.data, { n: 2 })
        const marks = yield* rows<{ count: string }>(
          `SELECT count(*)::text AS count FROM evento_processed_events WHERE category = '${category}'`
        )
        assert.strictEqual(marks[0]!.count, "5", "the parked message is marked too")
      }
    }))

  it.scoped("rolls back a transactional handler that crashes and applies it once on the retry", () =>
    Effect.gen(function*() {
      const category = freshCategory("crash")
      const table = `${category}_effects`
      yield* effectsTable(table)
      const written = yield* writeMessages(category, 3)
      let crashes = 0
      const handler = (message: Message) =>
        insertEffect(table, message).pipe(
          Effect.zipRight(
            Effect.suspend(() => message.data.n === 1 && crashes++ === 0 ? Effect.die("crash") : Effect.void)
          )
        )

      const fiber = yield* Effect.forkScoped(
        Consumer.run({ category, consumerId: "c", retry: fast, transactional: true, handler })
      )
      yield* eventually("position at the end", Effect.map(savedPosition(category, "c"), (p) => p === written[2]))
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(crashes, 2)
      assert.deepStrictEqual(yield* countsBy(table), [[0, 1], [1, 1], [2, 1]])
    }))

  it.scoped("commits a transactional handler's SQL, its mark and the position together or not at all", () =>
    Effect.gen(function*() {
      const category = freshCategory("joined")
      const table = `${category}_effects`
      // A deferred constraint fails at COMMIT, after the mark and the position were written in the transaction.
      yield* Effect.flatMap(
        SqlClient,
        (sql) =>
          sql.unsafe(`CREATE TABLE ${table} (event_id uuid NOT NULL, n integer NOT NULL,
          CONSTRAINT ${table}_once UNIQUE (n) DEFERRABLE INITIALLY DEFERRED)`)
      ).pipe(Effect.orDie)
      const written = yield* writeMessages(category, 3)
      const handler = (message: Message) =>
        insertEffect(table, message).pipe(
          Effect.zipRight(message.data.n === 1 ? insertEffect(table, message) : Effect.void)
        )

      const exit = yield* Effect.exit(
        Consumer.run({ category, consumerId: "c", retry: fast, transactional: true, handler })
      )
      const failure = failureOf(exit)
      assert.ok(failure instanceof Consumer.HandlerFailed, "a refused COMMIT counts against the message")
      assert.strictEqual(failure.globalPosition, written[1])
      assert.strictEqual(failure.attempts, 3)
      assert.strictEqual(yield* savedPosition(category, "c"), written[0])
      assert.deepStrictEqual(yield* countsBy(table), [[0, 1]])
      const marks = yield* rows<{ global_position: string }>(
        `SELECT global_position::text FROM evento_processed_events WHERE category = '${category}'`
      )
      assert.deepStrictEqual(marks.map((row) => Number(row.global_position)), [written[0]])
    }))

  it.scoped("leaves no partial effect when interrupted inside a transaction; a restart applies it once", () =>
    Effect.gen(function*() {
      const category = freshCategory("intr")
      const table = `${category}_effects`
      yield* effectsTable(table)
      const written = yield* writeMessages(category, 3)
      const inside = yield* Deferred.make<void>()
      const stuck = (message: Message) =>
        insertEffect(table, message).pipe(
          Effect.zipRight(
            message.data.n === 1 ? Deferred.succeed(inside, void 0).pipe(Effect.zipRight(Effect.never)) : Effect.void
          )
        )

      const fiber = yield* Effect.forkScoped(
        Consumer.run({ category, consumerId: "c", transactional: true, handler: stuck })
      )
      yield* Deferred.await(inside)
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(yield* countsBy(table), [[0, 1]])
      assert.strictEqual(yield* savedPosition(category, "c"), written[0])

      const again = yield* Effect.forkScoped(
        Consumer.run({ category, consumerId: "c", transactional: true, handler: (m) => insertEffect(table, m) })
      )
      yield* eventually("position at the end", Effect.map(savedPosition(category, "c"), (p) => p === written[2]))
      yield* Fiber.interrupt(again)
      assert.deepStrictEqual(yield* countsBy(table), [[0, 1], [1, 1], [2, 1]])
    }))

  it.scoped("saves what a batch handled when interrupted in the middle of it", () =>
    Effect.gen(function*() {
      const category = freshCategory("half")
      const written = yield* writeMessages(category, 5)
      const seen = recorder()
      const inside = yield* Deferred.make<void>()
      const handler = (message: Message) =>
        message.data.n === 3
          ? Deferred.succeed(inside, void 0).pipe(Effect.zipRight(Effect.never))
          : seen.handler(message)

      const fiber = yield* Effect.forkScoped(Consumer.run({ category, consumerId: "c", handler }))
      yield* Deferred.await(inside)
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(yield* savedPosition(category, "c"), written[2])

      const again = yield* Effect.forkScoped(Consumer.run({ category, consumerId: "c", handler: seen.handler }))
      yield* until("all handled", () => seen.messages.length >= 5)
      yield* Effect.sleep("200 millis")
      yield* Fiber.interrupt(again)
      assert.deepStrictEqual(positionsOf(seen.messages), written)
    }))

  it.scoped("commits a batch even when another writer marked one of its messages meanwhile", () =>
    Effect.gen(function*() {
      const client = yield* EventoClient
      const idempotency = yield* Idempotency.Idempotency
      const category = freshCategory("race")
      const key = { namespace: client.namespace, category, consumerId: "c" }
      const seen = recorder()
      yield* Effect.forkScoped(
        Consumer.run({ category, consumerId: "c", pollInterval: "100 millis", handler: seen.handler })
      )
      yield* Effect.sleep("300 millis")

      // Marked by someone else after the consumer started (and before it was written): the consumer's batch
      // commit meets an existing mark.
      const id = randomUUID()
      yield* Effect.orDie(idempotency.markProcessed(key, {
        id,
        streamName: `${category}-1`,
        type: "Happened",
        position: 0,
        globalPosition: 0,
        data: {},
        metadata: Option.none(),
        time: new Date()
      }))
      const written = [
        yield* Effect.orDie(client.streamWrite(`${category}-0`, { type: "Happened", data: { n: 0 } })),
        yield* Effect.orDie(client.streamWrite(`${category}-1`, { type: "Happened", data: { n: 1 } }, { id })),
        yield* Effect.orDie(client.streamWrite(`${category}-2`, { type: "Happened", data: { n: 2 } }))
      ].map((result) => result.globalPosition)
      yield* eventually("position at the end", Effect.map(savedPosition(category, "c"), (p) => p === written[2]))
      const marks = yield* rows<{ count: string }>(
        `SELECT count(*)::text AS count FROM evento_processed_events WHERE category = '${category}'`
      )
      assert.strictEqual(marks[0]!.count, "3")
    }))

  it.scoped("as a layer, logs a stopped consumer at error level and restarts it after restartDelay", () =>
    Effect.gen(function*() {
      const category = freshCategory("layer")
      const written = yield* writeMessages(category, 4)
      const seen = recorder()
      let failures = 0
      const handler = (message: Message) =>
        Effect.suspend(() => message.data.n === 1 && failures++ < 2 ? Effect.fail("not yet") : seen.handler(message))
      const errors: Array<{ message: string; annotations: Record<string, unknown> }> = []
      const capture = Logger.make(({ annotations, logLevel, message }) => {
        if (logLevel._tag === "Error") {
          errors.push({
            message: Array.isArray(message) ? message.join(" ") : String(message),
            annotations: Object.fromEntries(HashMap.toEntries(annotations))
          })
        }
      })

      const scope = yield* Scope.make()
      const started = Date.now()
      yield* Layer.buildWithScope(
        Consumer.layer({ category, consumerId: "c", retry: { attempts: 1 }, restartDelay: "300 millis", handler }),
        scope
      ).pipe(Effect.provide(Singleton.layerMemory), Effect.provide(Logger.add(capture)))
      yield* until("all handled", () => seen.messages.length >= 4)
      const elapsed = Date.now() - started
      yield* Scope.close(scope, Exit.void)

      assert.deepStrictEqual(positionsOf(seen.messages), written)
      assert.strictEqual(failures, 3)
      assert.ok(elapsed >= 600, `two restarts take two restart delays (${elapsed} ms)`)
      const stopped = errors.filter((line) => line.message.startsWith("Consumer stopped"))
      assert.strictEqual(stopped.length, 2)
      assert.strictEqual(stopped[0]!.annotations.singleton, `consumer:${(yield* EventoClient).namespace}:${category}:c`)
    }))
})
