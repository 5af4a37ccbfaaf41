/**
 * FaultProxy in front of the test target: each control does what fault tests rely on, and nothing else.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { randomBytes } from "node:crypto"
import * as Net from "node:net"
import * as EventoClient from "../src/EventoClient.js"
import * as FaultProxy from "../src/FaultProxy.js"
import * as EventoTest from "./support/EventoTest.js"

const stream = () => `proxy-${randomBytes(4).toString("hex")}`

const setup = Effect.gen(function*() {
  const target = yield* EventoTest.EventoTarget
  const { token } = yield* EventoTest.freshNamespace
  const proxy = yield* FaultProxy.make({ upstream: target.url })
  const client = yield* EventoClient.make({ url: proxy.url, token })
  return { client, proxy, token }
}).pipe(Effect.orDie)

/** A raw request through the proxy, to see exactly what it answers. */
const raw = (url: string, init?: RequestInit) =>
  Effect.promise(async () => {
    const response = await fetch(url, init)
    return { status: response.status, type: response.headers.get("content-type"), body: await response.text() }
  })

/** The error code of a TCP connect to the URL's port, or "connected". */
const connectError = (url: string) =>
  Effect.async<string>((resume) => {
    const socket = Net.connect(Number(new URL(url).port), "127.0.0.1")
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed("connected"))
    })
    socket.once("error", (error: NodeJS.ErrnoException) => resume(Effect.succeed(error.code ?? error.message)))
  })

const eventually = <A>(read: Effect.Effect<A>, done: (a: A) => boolean) =>
  read.pipe(
    Effect.filterOrFail(done, () => "not yet"),
    Effect.retry(Schedule.spaced("25 millis")),
    Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => "condition not reached in time" }),
    Effect.orDie
  )

const elapsed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const started = Date.now()
    const result = yield* effect
    return { result, millis: Date.now() - started }
  })

const TestLayer = Layer.mergeAll(EventoTest.layerTarget, NodeHttpClient.layerUndici)

layer(TestLayer, { timeout: "60 seconds", excludeTestServices: true })("FaultProxy", (it) => {
  describe("forwarding", () => {
    it.scoped("forwards RPC calls unchanged, listening on 127.0.0.1", () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* setup
        assert.match(proxy.url, /^http:\/\/127\.0\.0\.1:\d+$/)
        const name = stream()
        const written = yield* client.streamWrite(name, { type: "T", data: { ü: "✓" } })
        const [message] = yield* client.streamGet(name)
        assert.deepStrictEqual([message?.globalPosition, message?.data], [written.globalPosition, { ü: "✓" }])
        assert.deepStrictEqual((yield* proxy.requests).map((r) => [r.method, r.path]), [["POST", "/rpc"], [
          "POST",
          "/rpc"
        ]])
      }))

    it.scoped("streams SSE event by event while the connection stays open", () =>
      Effect.gen(function*() {
        const { client, proxy, token } = yield* setup
        const name = stream()
        const controller = new AbortController()
        yield* Effect.addFinalizer(() => Effect.sync(() => controller.abort()))
        const firstChunk = yield* Effect.fork(Effect.promise(async () => {
          const response = await fetch(`${proxy.url}/subscribe?stream=${name}`, {
            headers: { authorization: `Bearer ${Redacted.value(token)}` },
            signal: controller.signal
          })
          const reader = response.body!.getReader()
          let text = ""
          while (!text.includes("\n\n")) {
            const { done, value } = await reader.read()
            if (done) break
            text += new TextDecoder().decode(value)
          }
          return { type: response.headers.get("content-type"), text }
        }))
        yield* Effect.sleep("150 millis")
        yield* client.streamWrite(name, { type: "T", data: {} })
        const { text, type } = yield* firstChunk.await.pipe(Effect.flatten, Effect.timeout("5 seconds"))
        assert.strictEqual(type, "text/event-stream")
        assert.include(text, "event: poke")
        assert.include(text, `"stream":"${name}"`)
        assert.strictEqual(yield* proxy.openSubscriptions, 1)
      }))
  })

  describe("faults", () => {
    it.scoped("down refuses connections and closes open subscriptions; up serves again on the same URL", () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* setup
        const name = stream()
        yield* Effect.forkScoped(Stream.runDrain(client.subscribe({ stream: name })))
        yield* eventually(proxy.openSubscriptions, (n) => n === 1)
        yield* proxy.down()
        assert.strictEqual(yield* proxy.openSubscriptions, 0)
        assert.strictEqual(yield* connectError(proxy.url), "ECONNREFUSED")
        const refused = yield* Effect.flip(client.streamVersion(name))
        assert.strictEqual(refused._tag, "EventoUnavailable")
        yield* proxy.up()
        assert.deepStrictEqual(yield* client.streamVersion(name), Option.none())
        // The subscription notices and comes back by itself.
        yield* eventually(proxy.openSubscriptions, (n) => n === 1)
      }))

    it.scoped("latency delays every request until turned off", () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* setup
        yield* proxy.latency("300 millis")
        const slow = yield* elapsed(client.systemHealth)
        assert.isAtLeast(slow.millis, 280)
        yield* proxy.latency(0)
        const fast = yield* elapsed(client.systemHealth)
        assert.isBelow(fast.millis, 250)
      }))

    it.scoped("failNext answers n requests with the given status and body, then forwards again", () =>
      Effect.gen(function*() {
        const { proxy } = yield* setup
        yield* proxy.failNext(2, 503, { error: { code: "BACKEND_ERROR", message: "nope" } })
        const first = yield* raw(`${proxy.url}/health`)
        const second = yield* raw(`${proxy.url}/health`)
        const third = yield* raw(`${proxy.url}/health`)
        assert.deepStrictEqual([first.status, first.type], [503, "application/json"])
        assert.deepStrictEqual(JSON.parse(second.body), { error: { code: "BACKEND_ERROR", message: "nope" } })
        assert.deepStrictEqual([third.status, JSON.parse(third.body).status], [200, "ok"])
        yield* proxy.failNext(1, 502, "<html>bad gateway</html>")
        const text = yield* raw(`${proxy.url}/health`)
        assert.deepStrictEqual([text.status, text.type, text.body], [502, "text/plain", "<html>bad gateway</html>"])
      }))

    it.scoped("garbageNext answers 200 with a body that is not JSON", () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* setup
        yield* proxy.garbageNext(1)
        const garbage = yield* raw(`${proxy.url}/health`)
        assert.strictEqual(garbage.status, 200)
        assert.throws(() => JSON.parse(garbage.body))
        assert.strictEqual((yield* client.systemHealth).status, "ok")
      }))

    it.scoped("stall holds requests without answering, then lets them through", () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* setup
        yield* proxy.stall("500 millis")
        const held = yield* elapsed(client.systemVersion)
        assert.isAtLeast(held.millis, 450)
        assert.isString(held.result)
        const quick = yield* elapsed(client.systemVersion)
        assert.isBelow(quick.millis, 400)
      }))

    it.scoped("dropPokes keeps SSE connections open but forwards no pokes while on", () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* setup
        const name = stream()
        const positions: Array<number> = []
        yield* Effect.forkScoped(
          Stream.runForEach(client.subscribe({ stream: name }), (poke) =>
            Effect.sync(() => positions.push(poke.position)))
        )
        yield* eventually(proxy.openSubscriptions, (n) =>
          n === 1)
        yield* proxy.dropPokes(true)
        yield* client.streamWrite(name, { type: "T", data: {} })
        yield* Effect.sleep("300 millis")
        assert.deepStrictEqual(positions, [])
        assert.strictEqual(yield* proxy.openSubscriptions, 1)
        yield* proxy.dropPokes(false)
        yield* client.streamWrite(name, { type: "T", data: {} })
        yield* eventually(Effect.sync(() => positions.length), (n) => n === 1)
        assert.deepStrictEqual(positions, [1])
      }))

    it.effect("closing the scope stops the proxy", () =>
      Effect.gen(function*() {
        const target = yield* EventoTest.EventoTarget
        const scope = yield* Scope.make()
        const proxy = yield* FaultProxy.make({ upstream: target.url }).pipe(Scope.extend(scope))
        assert.strictEqual((yield* raw(`${proxy.url}/health`)).status, 200)
        yield* Scope.close(scope, Exit.void)
        assert.strictEqual(yield* connectError(proxy.url), "ECONNREFUSED")
      }))
  })
})
