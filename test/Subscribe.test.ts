/**
 * `EventoClient.subscribe` under faults (LESSONS 17-21): reconnects with backoff and resumes, stops on auth
 * failures, never mistakes silence for a dead connection, never keeps two connections for one subscription.
 * Every fault goes through FaultProxy, so these run against a real EventoDB too.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Undici from "@effect/platform-node/Undici"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import { assert, describe, layer } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { randomBytes } from "node:crypto"
import * as EventoClient from "../src/EventoClient.js"
import type { EventoError } from "../src/EventoError.js"
import * as FaultProxy from "../src/FaultProxy.js"
import * as Token from "../src/internal/token.js"
import * as EventoTest from "./support/EventoTest.js"

const stream = (prefix = "sub") => `${prefix}-${randomBytes(4).toString("hex")}`

/** A client on a fresh namespace through a FaultProxy, and one straight to the server for writing. */
const setup = Effect.gen(function*() {
  const target = yield* EventoTest.EventoTarget
  const { token } = yield* EventoTest.freshNamespace
  const proxy = yield* FaultProxy.make({ upstream: target.url })
  const client = yield* EventoClient.make({ url: proxy.url, token, timeout: "2 seconds" })
  const direct = yield* EventoClient.make({ url: target.url, token })
  return { client, direct, proxy, token }
}).pipe(Effect.orDie)

const subscribeRequests = (proxy: FaultProxy.FaultProxy.Service) =>
  Effect.map(proxy.requests, (requests) => requests.filter((r) => r.path.startsWith("/subscribe")))

/** Runs a subscription in the background, keeping every poke; `pokes` reads them so far. */
const background = (pokes: Stream.Stream<EventoClient.Poke, EventoError>) =>
  Effect.gen(function*() {
    const seen: Array<EventoClient.Poke> = []
    const fiber = yield* Effect.forkScoped(Stream.runForEach(pokes, (poke) => Effect.sync(() => seen.push(poke))))
    return { fiber, pokes: Effect.sync(() => [...seen]) }
  })

/** Polls `read` until `done` holds, for at most `seconds`. */
const eventually = <A>(read: Effect.Effect<A>, done: (a: A) => boolean, seconds = 10) =>
  read.pipe(
    Effect.filterOrFail(done, () => "not yet"),
    Effect.retry(Schedule.spaced("25 millis")),
    Effect.timeoutFail({ duration: `${seconds} seconds`, onTimeout: () => "condition not reached in time" }),
    Effect.orDie
  )

const TestLayer = Layer.mergeAll(EventoTest.layerTarget, NodeHttpClient.layerUndici)

layer(TestLayer, { timeout: "60 seconds", excludeTestServices: true })("EventoClient.subscribe", (it) => {
  describe("reconnecting", () => {
    it.scoped("resumes after the last poke once the server is back, without duplicates (LESSONS 17)", () =>
      Effect.gen(function*() {
        const { client, direct, proxy } = yield* setup
        const name = stream()
        const sub = yield* background(client.subscribe({ stream: name }))
        yield* Effect.sleep("150 millis")
        yield* direct.streamWrite(name, { type: "T", data: {} })
        yield* eventually(sub.pokes, (p) => p.length === 1)
        yield* proxy.down()
        yield* direct.streamWrite(name, { type: "T", data: {} })
        yield* direct.streamWrite(name, { type: "T", data: {} })
        yield* Effect.sleep("400 millis")
        yield* proxy.up()
        yield* eventually(sub.pokes, (p) => p.length >= 3)
        yield* direct.streamWrite(name, { type: "T", data: {} })
        const pokes = yield* eventually(sub.pokes, (p) => p.length >= 4)
        yield* Effect.sleep("200 millis")
        assert.deepStrictEqual((yield* sub.pokes).map((p) => p.position), [0, 1, 2, 3])
        assert.strictEqual(pokes.length, 4)
        assert.strictEqual(yield* proxy.openSubscriptions, 1)
      }))

    it.scoped("resumes a category subscription by global position", () =>
      Effect.gen(function*() {
        const { client, direct, proxy } = yield* setup
        const cat = `cat${randomBytes(4).toString("hex")}`
        const first = yield* direct.streamWrite(`${cat}-1`, { type: "T", data: {} })
        const sub = yield* background(client.subscribe({ category: cat }))
        yield* eventually(sub.pokes, (p) => p.length === 1)
        yield* proxy.down()
        const second = yield* direct.streamWrite(`${cat}-2`, { type: "T", data: {} })
        yield* Effect.sleep("300 millis")
        yield* proxy.up()
        const pokes = yield* eventually(sub.pokes, (p) => p.length === 2)
        assert.deepStrictEqual(pokes.map((p) => p.globalPosition), [first.globalPosition, second.globalPosition])
        const paths = (yield* subscribeRequests(proxy)).map((r) => r.path)
        assert.include(paths[paths.length - 1], `position=${first.globalPosition + 1}`)
      }))

    it.scoped("retries a 5xx answer to the subscription request", () =>
      Effect.gen(function*() {
        const { client, direct, proxy } = yield* setup
        const name = stream()
        yield* direct.streamWrite(name, { type: "T", data: {} })
        yield* proxy.failNext(2, 503, "<html>try later</html>")
        const sub = yield* background(client.subscribe({ stream: name }))
        yield* eventually(sub.pokes, (p) => p.length === 1)
        assert.strictEqual((yield* subscribeRequests(proxy)).length, 3)
      }))

    it.scoped("backs off while the server keeps failing: no hot reconnect loop", () =>
      Effect.gen(function*() {
        const { client, direct, proxy } = yield* setup
        const name = stream()
        yield* direct.streamWrite(name, { type: "T", data: {} })
        yield* proxy.failNext(1000, 503, "down for maintenance")
        const sub = yield* background(client.subscribe({ stream: name }))
        yield* Effect.sleep("1600 millis")
        const attempts = (yield* subscribeRequests(proxy)).length
        // Exponential from 100 ms: about 5 attempts in 1.6 s; a loop without delay would make hundreds.
        assert.isAtLeast(attempts, 3)
        assert.isAtMost(attempts, 9)
        yield* proxy.reset()
        yield* eventually(sub.pokes, (p) => p.length === 1, 15)
      }))

    it.scoped("retries a server that stalls before answering the subscription", () =>
      Effect.gen(function*() {
        const { direct, proxy, token } = yield* setup
        const client = yield* EventoClient.make({ url: proxy.url, token, timeout: "200 millis" })
        const name = stream()
        yield* direct.streamWrite(name, { type: "T", data: {} })
        yield* proxy.stall("700 millis")
        const sub = yield* background(client.subscribe({ stream: name }))
        yield* eventually(sub.pokes, (p) => p.length === 1)
        assert.isAtLeast((yield* subscribeRequests(proxy)).length, 2)
      }))
  })

  describe("ending", () => {
    it.scoped("ends with EventoAuthError on 403, after one request (LESSONS 18)", () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* setup
        const wrong = yield* client.withToken(Token.encode(client.namespace, "e".repeat(64)))
        const error = yield* Stream.runDrain(wrong.subscribe({ stream: stream() })).pipe(Effect.flip)
        assert.deepStrictEqual(error._tag === "EventoAuthError" && error.reason, "unauthorized")
        yield* Effect.sleep("300 millis")
        assert.strictEqual((yield* subscribeRequests(proxy)).length, 1)
      }))

    it.scoped("ends with InvalidRequest on a 400 plain-text answer, without retrying", () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* setup
        yield* proxy.failNext(1, 400, "Cannot specify both 'stream' and 'category'")
        const error = yield* Stream.runDrain(client.subscribe({ stream: stream() })).pipe(Effect.flip)
        assert.strictEqual(error._tag, "InvalidRequest")
        assert.include(error.message, "Cannot specify both")
        assert.strictEqual((yield* subscribeRequests(proxy)).length, 1)
      }))

    it.scoped("interrupting the stream closes its connection (no leaked subscriptions, LESSONS 19)", () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* setup
        const sub = yield* background(client.subscribe({ stream: stream() }))
        yield* eventually(proxy.openSubscriptions, (n) => n === 1)
        yield* proxy.down()
        yield* proxy.up()
        yield* eventually(subscribeRequests(proxy), (r) => r.length >= 2)
        yield* eventually(proxy.openSubscriptions, (n) => n === 1)
        yield* Effect.sleep("200 millis")
        assert.strictEqual(yield* proxy.openSubscriptions, 1)
        yield* Fiber.interrupt(sub.fiber)
        yield* eventually(proxy.openSubscriptions, (n) => n === 0)
      }))
  })

  describe("silence", () => {
    it.scoped("a quiet subscription stays connected and still delivers (LESSONS 20)", () =>
      Effect.gen(function*() {
        const { client, direct, proxy } = yield* setup
        const name = stream()
        const sub = yield* background(client.subscribe({ stream: name }))
        // Longer than the client's 2-second timeout: only the answer's headers are timed, not the silence after.
        yield* Effect.sleep("2500 millis")
        yield* direct.streamWrite(name, { type: "T", data: {} })
        yield* eventually(sub.pokes, (p) => p.length === 1)
        assert.strictEqual((yield* subscribeRequests(proxy)).length, 1)
      }))

    it.scoped("a client whose body timeout cuts quiet connections reconnects transparently", () =>
      Effect.gen(function*() {
        const target = yield* EventoTest.EventoTarget
        const { token } = yield* EventoTest.freshNamespace
        const proxy = yield* FaultProxy.make({ upstream: target.url })
        // Like fetch's default dispatcher (300 s body timeout), only much shorter.
        const dispatcher = yield* Effect.acquireRelease(
          Effect.sync(() => new Undici.Agent({ bodyTimeout: 300 })),
          (agent) => Effect.promise(() => agent.destroy())
        )
        // Node's fetch takes an undici dispatcher; its types come from the undici bundled with Node, not this one.
        const init: RequestInit = { dispatcher: dispatcher as unknown as NonNullable<RequestInit["dispatcher"]> }
        const http = yield* HttpClient.HttpClient.pipe(
          Effect.provide(FetchHttpClient.layer),
          Effect.provideService(FetchHttpClient.RequestInit, init)
        )
        const client = yield* EventoClient.make({ url: proxy.url, token }).pipe(
          Effect.provideService(HttpClient.HttpClient, http)
        )
        const direct = yield* EventoClient.make({ url: target.url, token })
        const name = stream()
        yield* direct.streamWrite(name, { type: "T", data: {} })
        const sub = yield* background(client.subscribe({ stream: name }))
        yield* eventually(sub.pokes, (p) => p.length === 1)
        yield* Effect.sleep("1200 millis")
        yield* direct.streamWrite(name, { type: "T", data: {} })
        yield* eventually(sub.pokes, (p) => p.length === 2)
        assert.deepStrictEqual((yield* sub.pokes).map((p) => p.position), [0, 1])
        assert.isAtLeast((yield* subscribeRequests(proxy)).length, 2)
      }).pipe(Effect.orDie))
  })

  describe("targets", () => {
    it.scoped("{ all: true } delivers pokes of every stream of the namespace", () =>
      Effect.gen(function*() {
        const { client, direct } = yield* setup
        const pokes = yield* Effect.forkScoped(Stream.runCollect(Stream.take(client.subscribe({ all: true }), 2)))
        yield* Effect.sleep("150 millis")
        const a = stream("alpha")
        const b = stream("beta")
        yield* direct.streamWrite(a, { type: "T", data: {} })
        yield* direct.streamWrite(b, { type: "T", data: {} })
        const got = Chunk.toReadonlyArray(yield* Fiber.join(pokes))
        assert.deepStrictEqual(got.map((p) => p.stream), [a, b])
      }))

    it.scoped("dropped pokes leave the connection open; later pokes arrive (pokes are hints, LESSONS 21)", () =>
      Effect.gen(function*() {
        const { client, direct, proxy } = yield* setup
        const name = stream()
        const sub = yield* background(client.subscribe({ stream: name }))
        yield* eventually(proxy.openSubscriptions, (n) => n === 1)
        yield* proxy.dropPokes(true)
        yield* direct.streamWrite(name, { type: "T", data: {} })
        yield* Effect.sleep("300 millis")
        assert.deepStrictEqual(yield* sub.pokes, [])
        yield* proxy.dropPokes(false)
        yield* direct.streamWrite(name, { type: "T", data: {} })
        const pokes = yield* eventually(sub.pokes, (p) => p.length === 1)
        assert.deepStrictEqual(pokes.map((p) => p.position), [1])
        assert.strictEqual((yield* subscribeRequests(proxy)).length, 1)
      }))

    it.scoped("the module accessor subscribes with the EventoClient service", () =>
      Effect.gen(function*() {
        const { direct } = yield* setup
        const name = stream()
        yield* direct.streamWrite(name, { type: "T", data: { n: 1 } })
        const pokes = yield* EventoClient.subscribe({ stream: name }).pipe(
          Stream.take(1),
          Stream.runCollect,
          Effect.provideService(EventoClient.EventoClient, direct)
        )
        assert.deepStrictEqual(Chunk.toReadonlyArray(pokes).map((p) => p.stream), [name])
      }))
  })
})
