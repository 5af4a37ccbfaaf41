import { assert, layer } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import * as Consumer from "../src/Consumer.js"
import { EventoClient, type Message } from "../src/EventoClient.js"
import { groupMember } from "../src/internal/streamName.js"
import { PositionStore } from "../src/PositionStore.js"
import {
  distinct,
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
import * as EventoTest from "./support/EventoTest.js"

const counterValue = (
  metric: Metric.Metric.Counter<number>,
  tags: Record<string, string>
) =>
  Metric.value(Object.entries(tags).reduce((tagged, [key, value]) => Metric.tagged(tagged, key, value), metric)).pipe(
    Effect.map((state) => state.count)
  )

layer(TestLayer, { excludeTestServices: true, timeout: "120 seconds" })("Consumer", (it) => {
  it.scoped("handles messages in global-position order, saves the position and resumes at saved + 1", () =>
    Effect.gen(function*() {
      const client = yield* EventoClient
      const category = freshCategory("order")
      const written = yield* writeMessages(category, 12, { streams: 4 })
      const seen = recorder()

      const first = yield* Effect.forkScoped(
        Consumer.run({ category, consumerId: "projection", batchSize: 5, handler: seen.handler })
      )
      yield* until("12 handled", () => seen.messages.length >= 12)
      yield* eventually("position saved", Effect.map(savedPosition(category, "projection"), (p) => p === written[11]))
      yield* Fiber.interrupt(first)
      assert.deepStrictEqual(positionsOf(seen.messages), written)
      assert.strictEqual(yield* savedPosition(category, "projection"), written[11])

      // The message arrays are unpacked field by field (LESSONS 14).
      const third = seen.messages[2]!
      assert.strictEqual(third.streamName, `${category}-2`)
      assert.strictEqual(third.type, "Happened")
      assert.deepStrictEqual(third.data, { n: 2 })
      assert.strictEqual(third.position, 0)

      const more = yield* writeMessages(category, 5, { streams: 4, from: 12 })
      const second = yield* Effect.forkScoped(
        Consumer.run({ category, consumerId: "projection", batchSize: 5, handler: seen.handler })
      )
      yield* until("17 handled", () => seen.messages.length >= 17)
      yield* Effect.sleep("300 millis")
      yield* Fiber.interrupt(second)

      assert.deepStrictEqual(positionsOf(seen.messages), [...written, ...more])
      assert.strictEqual(yield* savedPosition(category, "projection"), more[4])
      const tags = { namespace: client.namespace, category, consumer_id: "projection" }
      assert.strictEqual(yield* counterValue(Consumer.metrics.handled, tags), 17)
    }))

  it.scoped("reports its lag, the newest known global position minus its own, while a handler is stuck", () =>
    Effect.gen(function*() {
      const client = yield* EventoClient
      const category = freshCategory("lag")
      const gate = yield* Deferred.make<void>()
      const seen = recorder()
      const handler = (message: Message) =>
        (message.data.n === 4 ? Deferred.await(gate) : Effect.void).pipe(Effect.zipRight(seen.handler(message)))
      const lag = Metric.value(
        Metric.tagged(
          Metric.tagged(Metric.tagged(Consumer.metrics.lag, "namespace", client.namespace), "category", category),
          "consumer_id",
          "lagging"
        )
      ).pipe(Effect.map((state) => state.value))

      // Caught up on an empty category, it follows the head through pokes; then its handler gets stuck.
      yield* Effect.forkScoped(
        Consumer.run({ category, consumerId: "lagging", batchSize: 2, pollInterval: "30 seconds", handler })
      )
      yield* Effect.sleep("300 millis")
      const written = yield* writeMessages(category, 10)
      yield* eventually("lag while stuck", Effect.map(lag, (value) => value === written[9]! - written[3]!))
      assert.strictEqual(seen.messages.length, 4)

      yield* Deferred.succeed(gate, void 0)
      yield* until("all handled", () => seen.messages.length >= 10)
      yield* eventually("no lag", Effect.map(lag, (value) => value === 0))
    }))

  it.scoped("tells a fresh consumer from one that handled global position 1", () =>
    Effect.gen(function*() {
      const { token } = yield* EventoTest.freshNamespace
      const client = yield* Effect.orDie((yield* EventoClient).withToken(token))
      const positions = yield* PositionStore
      const category = freshCategory("fresh")
      const written = yield* writeMessages(category, 2).pipe(Effect.provideService(EventoClient, client))
      assert.deepStrictEqual(written, [1, 2])

      const key = (consumerId: string) => ({ namespace: client.namespace, category, consumerId })
      yield* Effect.orDie(positions.save(key("handled-one"), 1))
      yield* Effect.orDie(positions.save(key("handled-zero"), 0))

      const seenBy = (consumerId: string) =>
        Effect.gen(function*() {
          const seen = recorder()
          const fiber = yield* Effect.forkScoped(
            Consumer.run({ category, consumerId, handler: seen.handler }).pipe(
              Effect.provideService(EventoClient, client)
            )
          )
          yield* Effect.sleep("500 millis")
          yield* Fiber.interrupt(fiber)
          return positionsOf(seen.messages)
        })

      assert.deepStrictEqual(yield* seenBy("fresh"), [1, 2])
      assert.deepStrictEqual(yield* seenBy("handled-one"), [2])
      assert.deepStrictEqual(yield* seenBy("handled-zero"), [1, 2])
    }))

  it.scoped("does not handle a message again when it is fetched again while its mark remains", () =>
    Effect.gen(function*() {
      const client = yield* EventoClient
      const positions = yield* PositionStore
      const category = freshCategory("dup")
      const key = { namespace: client.namespace, category, consumerId: "dedupe" }
      const written = yield* writeMessages(category, 6)
      const seen = recorder()
      const start = () => Effect.forkScoped(Consumer.run({ category, consumerId: "dedupe", handler: seen.handler }))

      const first = yield* start()
      yield* until("6 handled", () => seen.messages.length >= 6)
      yield* eventually("position saved", Effect.map(savedPosition(category, "dedupe"), (p) => p === written[5]))
      yield* Fiber.interrupt(first)

      // Three messages are delivered again: the position goes back, their marks stay.
      yield* Effect.orDie(positions.reset(key, written[2]!))
      const more = yield* writeMessages(category, 2, { from: 6 })
      const second = yield* start()
      yield* until("8 handled", () => seen.messages.length >= 8)
      yield* Effect.sleep("300 millis")
      yield* Fiber.interrupt(second)

      assert.deepStrictEqual(positionsOf(seen.messages), [...written, ...more])
      assert.strictEqual(yield* savedPosition(category, "dedupe"), more[1])
      const duplicates = yield* counterValue(Consumer.metrics.duplicatesSkipped, {
        namespace: client.namespace,
        category,
        consumer_id: "dedupe"
      })
      assert.strictEqual(duplicates, 3)
    }))

  it.scoped("gives every message to each of two consumers of one category", () =>
    Effect.gen(function*() {
      const category = freshCategory("two")
      const written = yield* writeMessages(category, 10)
      const a = recorder()
      const b = recorder()
      yield* Effect.forkScoped(Consumer.run({ category, consumerId: "a", handler: a.handler }))
      yield* Effect.forkScoped(Consumer.run({ category, consumerId: "b", handler: b.handler }))
      yield* until("both handled all", () => a.messages.length >= 10 && b.messages.length >= 10)
      yield* Effect.sleep("300 millis")

      assert.deepStrictEqual(positionsOf(a.messages), written)
      assert.deepStrictEqual(positionsOf(b.messages), written)
      // The marks are scoped by consumer (LESSONS 10): each consumer has its own ten.
      const marks = yield* rows<{ consumer_id: string; count: string }>(
        `SELECT consumer_id, count(*)::text AS count FROM evento_processed_events
         WHERE category = '${category}' GROUP BY consumer_id ORDER BY consumer_id`
      )
      assert.deepStrictEqual(marks.map((row) => [row.consumer_id, row.count]), [["a", "10"], ["b", "10"]])
    }))

  it.scoped("splits 200 streams over a group of 3: disjoint, complete, each stream in one member", () =>
    Effect.gen(function*() {
      const client = yield* EventoClient
      const category = freshCategory("group")
      const streams = Array.from({ length: 200 }, (_, i) => `${category}-${i}`)
      const ids: Array<string> = []
      for (const round of [0, 1]) {
        const written = yield* Effect.forEach(
          streams,
          (stream) => Effect.orDie(client.streamWrite(stream, { type: "Happened", data: { round } })),
          { concurrency: 8 }
        )
        assert.strictEqual(written.length, 200)
      }
      const all = yield* Effect.orDie(client.categoryGet(category, { batchSize: -1 }))
      for (const message of all) ids.push(message.id)
      assert.strictEqual(ids.length, 400)

      const members = [0, 1, 2].map(() => recorder())
      yield* Effect.forEach(members, (seen, member) =>
        Effect.forkScoped(
          Consumer.run({
            category,
            consumerId: `member-${member}`,
            group: { member, size: 3 },
            batchSize: 50,
            handler: seen.handler
          })
        ))
      yield* until("400 handled", () => members.reduce((sum, seen) => sum + seen.messages.length, 0) >= 400)
      yield* Effect.sleep("300 millis")

      const handled = members.flatMap((seen) => seen.messages.map((message) => message.id))
      assert.strictEqual(handled.length, 400, "no member handled a message twice, none handled another's")
      assert.ok(distinct(handled), "members are disjoint")
      assert.deepStrictEqual([...handled].sort(), [...ids].sort(), "the union is complete")
      members.forEach((seen, member) => {
        assert.ok(seen.messages.length > 0, `member ${member} has work`)
        const own = positionsOf(seen.messages)
        assert.deepStrictEqual(own, [...own].sort((x, y) => x - y), `member ${member} in global order`)
        for (const message of seen.messages) {
          // The server's MD5 rule decides; every message of a stream lands on the same member.
          assert.strictEqual(groupMember(message.streamName, 3), member)
        }
      })
    }))

  it.scoped("reads only the messages the server's correlation filter lets through", () =>
    Effect.gen(function*() {
      const client = yield* EventoClient
      const category = freshCategory("corr")
      const write = (correlationStreamName: string | undefined) =>
        Effect.orDie(client.streamWrite(`${category}-1`, {
          type: "Happened",
          data: {},
          ...(correlationStreamName === undefined ? {} : { metadata: { correlationStreamName } })
        }))
      const wanted = yield* write("workflow-1")
      yield* write("other-2")
      yield* write(undefined)
      const alsoWanted = yield* write("workflow-9")
      const seen = recorder()

      const fiber = yield* Effect.forkScoped(
        Consumer.run({ category, consumerId: "corr", correlation: "workflow", handler: seen.handler })
      )
      yield* until("both handled", () => seen.messages.length >= 2)
      yield* Effect.sleep("300 millis")
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(positionsOf(seen.messages), [wanted.globalPosition, alsoWanted.globalPosition])
    }))

  it.scoped("dispatches by type with decoded data, skips and counts unknown types, parks undecodable data", () =>
    Effect.gen(function*() {
      const client = yield* EventoClient
      const category = freshCategory("typed")
      const write = (type: string, data: Record<string, unknown>) =>
        Effect.orDie(client.streamWrite(`${category}-1`, { type, data }))
      yield* write("Opened", { owner: "ada", amount: 5 })
      yield* write("Renamed", { owner: "bob" })
      const bad = yield* write("Opened", { owner: "eve", amount: "lots" })
      yield* write("Closed", { reason: "done" })

      const Opened = Schema.Struct({ owner: Schema.String, amount: Schema.Number })
      const Closed = Schema.Struct({ reason: Schema.String })
      const log: Array<string> = []
      const handler = Consumer.dispatch({
        handlers: {
          Opened: Consumer.on(
            Opened,
            (data) => Effect.sync(() => void log.push(`opened ${data.owner} ${data.amount}`))
          ),
          Closed: Consumer.on(
            Closed,
            (data, message) => Effect.sync(() => void log.push(`closed ${data.reason} at ${message.position}`))
          )
        },
        unknown: "skip"
      })
      const unknownBefore = yield* counterValue(Consumer.metrics.unknownTypes, { category })

      const fiber = yield* Effect.forkScoped(
        Consumer.run({ category, consumerId: "typed", handler, onFailure: "park", retry: { attempts: 2, delay: 1 } })
      )
      yield* until("closed handled", () => log.length >= 2)
      yield* Effect.sleep("200 millis")
      yield* Fiber.interrupt(fiber)

      assert.deepStrictEqual(log, ["opened ada 5", "closed done at 3"])
      assert.strictEqual((yield* counterValue(Consumer.metrics.unknownTypes, { category })) - unknownBefore, 1)
      const parked = yield* rows<{ global_position: string; attempts: number; error: string }>(
        `SELECT global_position::text, attempts, error FROM evento_parked_messages WHERE category = '${category}'`
      )
      assert.strictEqual(parked.length, 1)
      assert.strictEqual(Number(parked[0]!.global_position), bad.globalPosition)
      assert.strictEqual(parked[0]!.attempts, 2)
      assert.match(parked[0]!.error, /amount/)
    }))

  it.scoped("fails on an unknown type when dispatch is told to, naming the message", () =>
    Effect.gen(function*() {
      const client = yield* EventoClient
      const category = freshCategory("strict")
      const known = yield* Effect.orDie(client.streamWrite(`${category}-1`, { type: "Known", data: {} }))
      const stranger = yield* Effect.orDie(client.streamWrite(`${category}-1`, { type: "Stranger", data: {} }))
      const seen: Array<number> = []
      const handler = Consumer.dispatch({
        handlers: {
          Known: Consumer.on(Schema.Struct({}), (_, message: Message) =>
            Effect.sync(() => void seen.push(message.globalPosition)))
        },
        unknown: "fail"
      })

      const exit = yield* Effect.exit(
        Consumer.run({ category, consumerId: "strict", handler, retry: { attempts: 1 } })
      )
      assert.deepStrictEqual(seen, [known.globalPosition])
      assert.ok(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause : undefined
      const failure = error && error._tag === "Fail" ? error.error : undefined
      assert.ok(failure instanceof Consumer.HandlerFailed)
      assert.strictEqual(failure.globalPosition, stranger.globalPosition)
      assert.ok(failure.cause instanceof Consumer.UnknownMessageType)
      assert.strictEqual(yield* savedPosition(category, "strict"), known.globalPosition)
    }))
})
