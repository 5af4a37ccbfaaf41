/**
 * The in-process server over real sockets: statuses and headers, authentication before the stream, SSE replay,
 * live pokes, `: ready`, bad parameters, the 100-poke buffer, many connections, and shutdown closing streams.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Redacted from "effect/Redacted"
import * as EventoTestServer from "../src/EventoTestServer.js"
import * as NodeServer from "../src/internal/memory/nodeServer.js"
import * as Protocol from "../src/internal/memory/protocol.js"
import { MemoryStore } from "../src/internal/memory/store.js"
import * as Token from "../src/internal/memory/token.js"

/** An SSE connection read event by event: parsed poke data, or the text of a comment block. */
class SseReader {
  private buffer = ""
  private readonly decoder = new TextDecoder()
  // A read that outlived a timeout still owns the next chunk; keep it for the next call instead of losing it.
  private pending: ReturnType<ReadableStreamDefaultReader<Uint8Array>["read"]> | undefined
  constructor(
    readonly response: Response,
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    private readonly controller: AbortController
  ) {}

  static open(url: string): Promise<SseReader> {
    const controller = new AbortController()
    return fetch(url, { signal: controller.signal }).then((response) =>
      new SseReader(response, response.body!.getReader(), controller)
    )
  }

  /** The next event, or "closed" when the server ends the stream, or "timeout". */
  async next(timeoutMs = 2000): Promise<unknown> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const end = this.buffer.indexOf("\n\n")
      if (end !== -1) {
        const block = this.buffer.slice(0, end)
        this.buffer = this.buffer.slice(end + 2)
        const data = block.split("\n").find((line) => line.startsWith("data: "))
        return data === undefined ? block : JSON.parse(data.slice(6))
      }
      const remaining = deadline - Date.now()
      if (remaining <= 0) return "timeout"
      let timer: ReturnType<typeof setTimeout> | undefined
      this.pending ??= this.reader.read()
      const result = await Promise.race([
        this.pending,
        new Promise<"timeout">((resolve) => {
          timer = setTimeout(() => resolve("timeout"), remaining)
        })
      ])
      clearTimeout(timer)
      if (result === "timeout") return "timeout"
      this.pending = undefined
      if (result.done) return "closed"
      this.buffer += this.decoder.decode(result.value, { stream: true })
    }
  }

  close(): void {
    this.controller.abort()
  }
}

const sse = (url: string) =>
  Effect.acquireRelease(Effect.promise(() => SseReader.open(url)), (reader) => Effect.sync(() => reader.close()))

const next = (reader: SseReader, timeoutMs?: number) => Effect.promise(() => reader.next(timeoutMs))

const running = Effect.gen(function*() {
  const server = yield* EventoTestServer.make()
  const admin = Redacted.value(server.adminToken)
  const rpc = (body: unknown, token: string | null = admin, init: RequestInit = {}) =>
    Effect.promise(async () => {
      const response = await fetch(`${server.url}/rpc`, {
        method: "POST",
        headers: token === null ? {} : { authorization: `Bearer ${token}` },
        body: typeof body === "string" ? body : JSON.stringify(body),
        ...init
      })
      const text = await response.text()
      return {
        status: response.status,
        headers: response.headers,
        text,
        body: text === "" ? undefined : JSON.parse(text)
      }
    })
  const namespace = (id: string) =>
    Effect.map(rpc(["ns.create", id]), (reply) => (reply.body as { token: string }).token)
  return { server, admin, rpc, namespace }
})

describe("EventoTestServer over HTTP", () => {
  it.scopedLive("answers RPC with the server's statuses, JSON bodies and trailing newline", () =>
    Effect.gen(function*() {
      const { admin, rpc, server } = yield* running
      const version = yield* rpc(["sys.version"])
      assert.deepStrictEqual([version.status, version.text], [200, "\"0.7.0\"\n"])
      assert.strictEqual(version.headers.get("content-type"), "application/json")
      const none = yield* rpc(["sys.version"], null)
      assert.deepStrictEqual([none.status, none.body.error.code], [401, "AUTH_REQUIRED"])
      const unknown = yield* rpc(["no.such"])
      assert.deepStrictEqual([unknown.status, unknown.body.error.code], [404, "METHOD_NOT_FOUND"])

      const get = yield* Effect.promise(() =>
        fetch(`${server.url}/rpc`, { headers: { authorization: `Bearer ${admin}` } }).then((r) => r.status)
      )
      assert.strictEqual(get, 405)
      const getWithoutToken = yield* Effect.promise(() => fetch(`${server.url}/rpc`).then((r) => r.status))
      assert.strictEqual(getWithoutToken, 401)
      for (const [path, status] of [["/health", 200], ["/version", 200], ["/nope", 404]] as const) {
        const response = yield* Effect.promise(() =>
          fetch(`${server.url}${path}`, { method: "DELETE" }).then(async (r) => ({
            status: r.status,
            body: await r.json()
          }))
        )
        assert.strictEqual(response.status, status, path)
      }
    }))

  it.scopedLive("serves many concurrent keep-alive requests", () =>
    Effect.gen(function*() {
      const { namespace, rpc } = yield* running
      const token = yield* namespace("busy")
      const replies = yield* Effect.forEach(
        Array.from({ length: 300 }, (_, i) => i),
        (i) => rpc(["stream.write", `load-${i % 10}`, { type: "T", data: { i } }], token),
        { concurrency: 100 }
      )
      assert.isTrue(replies.every((reply) => reply.status === 200))
      const positions = replies.map((reply) => reply.body.globalPosition as number).sort((a, b) => a - b)
      assert.deepStrictEqual(positions, Array.from({ length: 300 }, (_, i) => i + 1))
    }))
})

describe("EventoTestServer subscriptions", () => {
  it.scopedLive("replays a stream from a position, then sends live pokes, with the exact SSE headers", () =>
    Effect.gen(function*() {
      const { namespace, rpc, server } = yield* running
      const token = yield* namespace("sse-stream")
      for (let i = 0; i < 5; i++) yield* rpc(["stream.write", "sub-1", { type: "T", data: { i } }], token)
      const reader = yield* sse(`${server.url}/subscribe?stream=sub-1&position=3&token=${token}`)
      assert.strictEqual(reader.response.status, 200)
      assert.strictEqual(reader.response.headers.get("content-type"), "text/event-stream")
      assert.strictEqual(reader.response.headers.get("cache-control"), "no-cache")
      assert.strictEqual(reader.response.headers.get("access-control-allow-origin"), "*")
      assert.deepStrictEqual(yield* next(reader), { stream: "sub-1", position: 3, globalPosition: 4 })
      assert.deepStrictEqual(yield* next(reader), { stream: "sub-1", position: 4, globalPosition: 5 })
      yield* rpc(["stream.write", "other-1", { type: "T", data: {} }], token)
      yield* rpc(["stream.write", "sub-1", { type: "T", data: {} }], token)
      assert.deepStrictEqual(yield* next(reader), { stream: "sub-1", position: 5, globalPosition: 7 })
      // No heartbeats: a quiet stream stays silent.
      assert.strictEqual(yield* next(reader, 300), "timeout")
    }))

  it.scopedLive("replays a category member's share by MD5 and sends live pokes of the category", () =>
    Effect.gen(function*() {
      const { namespace, rpc, server } = yield* running
      const token = yield* namespace("sse-category")
      for (const id of ["1", "2", "3", "4"]) yield* rpc(["stream.write", `grp-${id}`, { type: "T", data: {} }], token)
      const member0 = yield* sse(`${server.url}/subscribe?category=grp&consumer=0&size=2&token=${token}`)
      // test-1 and test-3 hash to member 0 of 2 (PROTOCOL.md §11.1); the same ids here.
      assert.deepStrictEqual(yield* next(member0), { stream: "grp-1", position: 0, globalPosition: 1 })
      assert.deepStrictEqual(yield* next(member0), { stream: "grp-3", position: 0, globalPosition: 3 })
      const all = yield* sse(`${server.url}/subscribe?category=grp&position=4&token=${token}`)
      assert.deepStrictEqual(yield* next(all), { stream: "grp-4", position: 0, globalPosition: 4 })
      yield* rpc(["stream.write", "grp-2", { type: "T", data: {} }], token)
      assert.deepStrictEqual(yield* next(all), { stream: "grp-2", position: 1, globalPosition: 5 })
    }))

  it.scopedLive("sends ': ready' first for all=true, replays nothing, then every write from the position", () =>
    Effect.gen(function*() {
      const { namespace, rpc, server } = yield* running
      const token = yield* namespace("sse-all")
      yield* rpc(["stream.write", "a-1", { type: "T", data: {} }], token)
      const reader = yield* sse(`${server.url}/subscribe?all=true&token=${token}`)
      assert.strictEqual(yield* next(reader), ": ready")
      yield* rpc(["stream.write", "b-1", { type: "T", data: {} }], token)
      assert.deepStrictEqual(yield* next(reader), { stream: "b-1", position: 0, globalPosition: 2 })
    }))

  it.scopedLive("refuses bad parameters with a plain-text 400 and missing auth with JSON before any stream", () =>
    Effect.gen(function*() {
      const { namespace, server } = yield* running
      const token = yield* namespace("sse-bad")
      const cases: ReadonlyArray<readonly [string, string]> = [
        ["position=0", "Either 'stream', 'category', or 'all=true' parameter required"],
        ["stream=a-1&category=a", "Cannot specify both 'stream' and 'category'"],
        ["all=true&stream=a-1", "Cannot combine 'all' with 'stream' or 'category'"],
        ["stream=a-1&position=x", "Invalid position parameter"],
        ["category=a&consumer=x", "Invalid consumer parameter"],
        ["category=a&size=x", "Invalid size parameter"],
        ["category=a&consumer=2&size=2", "Invalid consumer group: member must be < size"],
        ["category=a&consumer=1", "Invalid consumer group: member must be < size"]
      ]
      for (const [query, message] of cases) {
        const response = yield* Effect.promise(() =>
          fetch(`${server.url}/subscribe?${query}&token=${token}`).then(async (r) => ({
            status: r.status,
            type: r.headers.get("content-type"),
            text: await r.text()
          }))
        )
        assert.deepStrictEqual([response.status, response.text], [400, message], query)
        assert.match(response.type!, /^text\/plain/)
      }
      const unauthenticated = yield* Effect.promise(() =>
        fetch(`${server.url}/subscribe?stream=a-1`).then(async (r) => ({ status: r.status, body: await r.json() }))
      )
      assert.deepStrictEqual(unauthenticated, {
        status: 401,
        body: { error: { code: "AUTH_REQUIRED", message: "Authorization header required" } }
      })
      // Change the token's last hex digit (to one it is not), so the hash no longer matches.
      const wrongSecret = `${token.slice(0, -1)}${token.endsWith("0") ? "1" : "0"}`
      const forbidden = yield* Effect.promise(() =>
        fetch(`${server.url}/subscribe?stream=a-1&token=${wrongSecret}`).then((r) => r.status)
      )
      assert.strictEqual(forbidden, 403)
    }))

  it.scopedLive("drops the pokes that do not fit a subscriber's 100-slot buffer", () =>
    Effect.gen(function*() {
      // The server's own parts, so one synchronous burst of writes lands while the subscriber cannot read.
      const store = new MemoryStore()
      const token = Token.generate("burst")
      const namespace = store.createNamespace("burst", token, "")!
      const handler = yield* Protocol.make(store)
      const port = yield* NodeServer.serve(handler, { host: "127.0.0.1", port: 0 })
      const reader = yield* sse(`http://127.0.0.1:${port}/subscribe?stream=b-1&token=${token}`)
      const write = () =>
        store.write(namespace, {
          streamName: "b-1",
          type: "T",
          data: {},
          metadata: undefined,
          id: undefined,
          expectedVersion: undefined
        })
      for (let i = 0; i < 150; i++) write()
      // The buffer holds 100; a reader already waiting when the burst starts takes one more directly.
      const positions: Array<number> = []
      for (;;) {
        const event = yield* next(reader, 300)
        if (event === "timeout") break
        positions.push((event as { position: number }).position)
      }
      assert.include([100, 101], positions.length)
      assert.deepStrictEqual(positions, Array.from({ length: positions.length }, (_, i) => i))
      write()
      assert.deepStrictEqual(yield* next(reader), { stream: "b-1", position: 150, globalPosition: 151 })
    }))

  it.scopedLive("ends every subscription cleanly when the server's fiber is interrupted", () =>
    Effect.gen(function*() {
      // As the dev server stops on SIGINT: its fiber is interrupted and the server's scope closes.
      const started = yield* Deferred.make<EventoTestServer.EventoTestServer.Service>()
      const fiber = yield* EventoTestServer.make().pipe(
        Effect.flatMap((server) => Deferred.succeed(started, server)),
        Effect.zipRight(Effect.never),
        Effect.scoped,
        Effect.forkDaemon
      )
      const server = yield* Deferred.await(started)
      const admin = Redacted.value(server.adminToken)
      const readers = yield* Effect.forEach(
        ["stream=a-1", "category=a", "all=true"],
        (query) => Effect.promise(() => SseReader.open(`${server.url}/subscribe?${query}&token=${admin}`))
      )
      assert.strictEqual(yield* next(readers[2]!), ": ready")
      const before = Date.now()
      yield* Fiber.interrupt(fiber)
      for (const reader of readers) assert.strictEqual(yield* next(reader), "closed")
      assert.isBelow(Date.now() - before, 2000)
      const refused = yield* Effect.promise(() => fetch(`${server.url}/health`).then(() => "answered", () => "refused"))
      assert.strictEqual(refused, "refused")
    }))

  it.scopedLive("holds many subscriptions at once, each getting its own pokes", () =>
    Effect.gen(function*() {
      const { namespace, rpc, server } = yield* running
      const token = yield* namespace("sse-many")
      const readers = yield* Effect.forEach(
        Array.from({ length: 40 }, (_, i) => i),
        (i) => sse(`${server.url}/subscribe?stream=many-${i}&token=${token}`),
        { concurrency: "unbounded" }
      )
      yield* Effect.forEach(
        readers,
        (_, i) => rpc(["stream.write", `many-${i}`, { type: "T", data: {} }], token),
        { concurrency: 10 }
      )
      const pokes = yield* Effect.forEach(readers, (reader) => next(reader), { concurrency: "unbounded" })
      assert.deepStrictEqual(
        pokes.map((poke) => (poke as { stream: string }).stream),
        readers.map((_, i) => `many-${i}`)
      )
    }))
})

describe("EventoTestServer.make", () => {
  it.scopedLive("refuses a token that is not the default namespace's", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(EventoTestServer.make({ token: Token.generate("other") }))
      assert.strictEqual(error.reason, "invalid-token")
      const garbage = yield* Effect.flip(EventoTestServer.make({ token: "nope" }))
      assert.strictEqual(garbage.reason, "invalid-token")
    }))

  it.scopedLive("accepts a custom default token and fails to listen on a taken port", () =>
    Effect.gen(function*() {
      const token = Token.generate("default")
      const first = yield* EventoTestServer.make({ token })
      const reply = yield* Effect.promise(() =>
        fetch(`${first.url}/rpc`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}` },
          body: "[\"ns.list\"]"
        })
          .then((r) => r.status)
      )
      assert.strictEqual(reply, 200)
      const port = Number(new URL(first.url).port)
      const taken = yield* Effect.flip(EventoTestServer.make({ port }))
      assert.strictEqual(taken.reason, "listen")
    }))
})
