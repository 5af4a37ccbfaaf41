/**
 * The EventoDB SDK conformance suite: every test ID of SDK-TESTS.md, against the in-process server, or against a
 * real EventoDB when EVENTODB_URL and EVENTODB_ADMIN_TOKEN are set. Each test works in a namespace of its own.
 * Expectations follow PROTOCOL.md's account of the real server where the plan is vague or wrong.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Headers from "@effect/platform/Headers"
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { assert, describe, layer } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { randomBytes, randomUUID } from "node:crypto"
import * as EventoClient from "../src/EventoClient.js"
import type { EventoError } from "../src/EventoError.js"
import * as FaultProxy from "../src/FaultProxy.js"
import * as StreamName from "../src/internal/streamName.js"
import * as Token from "../src/internal/token.js"
import * as EventoTest from "./support/EventoTest.js"

// --- helpers ---

const suffix = () => randomBytes(4).toString("hex")

/** A unique category name (no dash) and stream names in it. */
const category = (prefix = "cat") => `${prefix}${suffix()}`
const stream = (prefix = "account") => `${prefix}-${suffix()}`

/** A client on a fresh namespace of the target, deleted when the test's scope closes. */
const freshClient = (options?: { readonly timeout?: Duration.DurationInput }) =>
  Effect.gen(function*() {
    const target = yield* EventoTest.EventoTarget
    const { namespace, token } = yield* EventoTest.freshNamespace
    const client = yield* EventoClient.make({ url: target.url, token, ...options })
    return { client, namespace, token }
  }).pipe(Effect.orDie)

/** A client with the admin token (the `default` namespace's), for namespace methods. */
const adminClient = Effect.gen(function*() {
  const target = yield* EventoTest.EventoTarget
  return yield* EventoClient.make({ url: target.url, token: target.adminToken })
}).pipe(Effect.orDie)

/** A FaultProxy in front of the target, and a client on a fresh namespace that goes through it. */
const proxiedClient = (options?: { readonly timeout?: Duration.DurationInput }) =>
  Effect.gen(function*() {
    const target = yield* EventoTest.EventoTarget
    const fresh = yield* freshClient()
    const proxy = yield* FaultProxy.make({ upstream: target.url })
    const client = yield* EventoClient.make({ url: proxy.url, token: fresh.token, ...options })
    return { proxy, client, direct: fresh.client }
  }).pipe(Effect.orDie)

/** A client on `token` whose HttpClient is changed by `f` (to strip or rewrite what the SDK would send). */
const clientWith = (
  token: string | Redacted.Redacted<string>,
  f: (request: HttpClientRequest.HttpClientRequest) => HttpClientRequest.HttpClientRequest
) =>
  Effect.gen(function*() {
    const target = yield* EventoTest.EventoTarget
    const http = yield* HttpClient.HttpClient
    return yield* EventoClient.make({ url: target.url, token }).pipe(
      Effect.provideService(HttpClient.HttpClient, HttpClient.mapRequest(http, f))
    )
  }).pipe(Effect.orDie)

// `modify` merges headers, so the request is rebuilt without the header.
const withoutAuthorization = (request: HttpClientRequest.HttpClientRequest) =>
  HttpClientRequest.make(request.method)(request.url, {
    headers: Headers.remove(request.headers, "authorization"),
    urlParams: request.urlParams,
    body: request.body
  })

const writeN = (client: EventoClient.EventoClient.Service, name: string, n: number, type = "Event") =>
  Effect.forEach(
    Array.from({ length: n }, (_, i) => i),
    (i) => client.streamWrite(name, { type, data: { i } }),
    { concurrency: 1 }
  )

/** The error a failed effect failed with. */
const failure = <A>(effect: Effect.Effect<A, EventoError>) => Effect.flip(effect)

/** The first `n` pokes of a subscription, started in the background; `await` joins it. */
const collectPokes = (pokes: Stream.Stream<EventoClient.Poke, EventoError>, n: number) =>
  Effect.map(
    Effect.forkScoped(Stream.runCollect(Stream.take(pokes, n)).pipe(Effect.timeout("10 seconds"))),
    (fiber) => ({ await: Effect.map(Fiber.join(fiber), Chunk.toReadonlyArray) })
  )

// The production server starts live delivery after its replay query; give a subscription a moment to settle
// before writing what it must see live (PROTOCOL.md §13).
const settle = Effect.sleep("150 millis")

const semver = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

const TestLayer = Layer.mergeAll(EventoTest.layerTarget, NodeHttpClient.layerUndici)

layer(TestLayer, { timeout: "60 seconds", excludeTestServices: true })("EventoClient conformance", (it) => {
  describe("WRITE", () => {
    it.scoped("WRITE-001 a minimal write returns positions; the first message is at position 0", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const result = yield* client.streamWrite(stream(), { type: "Opened", data: { a: 1 } })
        assert.strictEqual(result.position, 0)
        assert.isAtLeast(result.globalPosition, 0)
      }))

    it.scoped("WRITE-002 metadata written comes back exactly", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        const metadata = { correlationStreamName: "flow-9", by: "x", n: 1.5, nested: { ok: true } }
        const result = yield* client.streamWrite(name, { type: "Deposited", data: { amount: 5 }, metadata })
        assert.strictEqual(result.position, 0)
        const [message] = yield* client.streamGet(name)
        assert.deepStrictEqual(message?.metadata, Option.some(metadata))
      }))

    it.scoped("WRITE-003 a custom UUID id is the id read back", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        const id = randomUUID()
        yield* client.streamWrite(name, { type: "Opened", data: {} }, { id })
        const [message] = yield* client.streamGet(name)
        assert.strictEqual(message?.id, id)
      }))

    it.scoped("WRITE-004 expectedVersion 1 on a 2-message stream appends at position 2", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        yield* writeN(client, name, 2)
        const result = yield* client.streamWrite(name, { type: "E", data: {} }, { expectedVersion: 1 })
        assert.strictEqual(result.position, 2)
      }))

    it.scoped("WRITE-005 expectedVersion 5 on a 2-message stream is a StreamVersionConflict", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        yield* writeN(client, name, 2)
        const error = yield* failure(client.streamWrite(name, { type: "E", data: {} }, { expectedVersion: 5 }))
        assert.strictEqual(error._tag, "StreamVersionConflict")
        if (error._tag !== "StreamVersionConflict") return
        assert.strictEqual(error.stream, name)
        assert.strictEqual(error.expectedVersion, 5)
        // Postgres sends no actual version, SQLite does (PROTOCOL.md §3).
        assert.isTrue(Option.getOrElse(Option.map(error.actualVersion, (v) => v === 1), () => true))
        assert.deepStrictEqual(yield* client.streamVersion(name), Option.some(1))
      }))

    it.scoped("WRITE-006 five sequential writes get positions 0-4 and increasing global positions", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const results = yield* writeN(client, stream(), 5)
        assert.deepStrictEqual(results.map((r) => r.position), [0, 1, 2, 3, 4])
        for (let i = 1; i < results.length; i++) {
          assert.isAbove(results[i]!.globalPosition, results[i - 1]!.globalPosition)
        }
      }))

    it.scoped("WRITE-007 writing to account-123 succeeds", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const result = yield* client.streamWrite("account-123", { type: "Opened", data: {} })
        assert.strictEqual(result.position, 0)
      }))

    it.scoped("WRITE-008 empty data is stored as an empty object", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        yield* client.streamWrite(name, { type: "Empty", data: {} })
        const [message] = yield* client.streamGet(name)
        assert.deepStrictEqual(message?.data, {})
      }))

    it.scoped("WRITE-009 a message without metadata reads back with none (the key is omitted, never null)", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        yield* client.streamWrite(name, { type: "Plain", data: { x: 1 } })
        yield* client.streamWrite(name, { type: "Plain", data: { x: 2 }, metadata: undefined })
        const messages = yield* client.streamGet(name)
        assert.deepStrictEqual(messages.map((m) => m.metadata), [Option.none(), Option.none()])
      }))

    it.scoped("WRITE-010 a write without a token is EventoAuthError required", () =>
      Effect.gen(function*() {
        const { token } = yield* freshClient()
        const client = yield* clientWith(token, withoutAuthorization)
        const error = yield* failure(client.streamWrite(stream(), { type: "E", data: {} }))
        assert.deepStrictEqual(error._tag === "EventoAuthError" && error.reason, "required")
      }))

    it.scoped("a duplicate message id is DuplicateMessageId naming the id, in the same or another stream", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const id = randomUUID()
        const name = stream()
        yield* client.streamWrite(name, { type: "Opened", data: {} }, { id })
        for (const again of [name, stream()]) {
          const error = yield* failure(client.streamWrite(again, { type: "Opened", data: {} }, { id }))
          assert.strictEqual(error._tag, "DuplicateMessageId")
          assert.strictEqual(error._tag === "DuplicateMessageId" && error.id, id)
        }
        assert.strictEqual((yield* client.streamGet(name)).length, 1)
      }))
  })

  describe("READ", () => {
    it.scoped("READ-001 a missing stream reads as []", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        assert.deepStrictEqual(yield* client.streamGet(stream("missing")), [])
      }))

    it.scoped("READ-002 one message decodes every field, streamName filled from the request", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        const written = yield* client.streamWrite(name, { type: "Opened", data: { owner: "ann" } })
        const messages = yield* client.streamGet(name)
        assert.strictEqual(messages.length, 1)
        const [message] = messages
        assert.match(message!.id, uuid)
        assert.strictEqual(message!.streamName, name)
        assert.strictEqual(message!.type, "Opened")
        assert.strictEqual(message!.position, 0)
        assert.strictEqual(message!.globalPosition, written.globalPosition)
        assert.deepStrictEqual(message!.data, { owner: "ann" })
        assert.deepStrictEqual(message!.metadata, Option.none())
        assert.instanceOf(message!.time, Date)
      }))

    it.scoped("READ-003 five messages come back in position order", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        yield* writeN(client, name, 5)
        const messages = yield* client.streamGet(name)
        assert.deepStrictEqual(messages.map((m) => [m.position, m.data["i"]]), [[0, 0], [1, 1], [2, 2], [3, 3], [4, 4]])
      }))

    it.scoped("READ-004 position 5 on 10 messages gives positions 5-9", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        yield* writeN(client, name, 10)
        const messages = yield* client.streamGet(name, { position: 5 })
        assert.deepStrictEqual(messages.map((m) => m.position), [5, 6, 7, 8, 9])
      }))

    it.scoped("READ-005 globalPosition selects the messages at or after it", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        const written = yield* writeN(client, name, 5)
        const from = written[2]!.globalPosition
        const messages = yield* client.streamGet(name, { globalPosition: from })
        assert.deepStrictEqual(messages.map((m) => m.position), [2, 3, 4])
        assert.isTrue(messages.every((m) => m.globalPosition >= from))
      }))

    it.scoped("READ-006 batchSize 10 on 100 messages gives positions 0-9", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        yield* writeN(client, name, 100)
        const messages = yield* client.streamGet(name, { batchSize: 10 })
        assert.deepStrictEqual(messages.map((m) => m.position), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      }))

    it.scoped("READ-007 batchSize -1 on 50 messages gives all 50", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        yield* writeN(client, name, 50)
        assert.strictEqual((yield* client.streamGet(name, { batchSize: -1 })).length, 50)
      }))

    it.scoped("READ-008 complex nested data comes back deep-equal", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        const data = {
          order: { lines: [{ sku: "a", qty: 2, tags: ["x", "y"] }, { sku: "b", qty: 1, tags: [] }] },
          n: null
        }
        yield* client.streamWrite(name, { type: "Placed", data })
        const [message] = yield* client.streamGet(name)
        assert.deepStrictEqual(message?.data, data)
      }))

    it.scoped("READ-009 metadata comes back deep-equal", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        const metadata = { causationMessageId: randomUUID(), trace: { id: "t-1", sampled: true }, tags: [1, "two"] }
        yield* client.streamWrite(name, { type: "Placed", data: {}, metadata })
        const [message] = yield* client.streamGet(name)
        assert.deepStrictEqual(message?.metadata, Option.some(metadata))
      }))

    it.scoped("READ-010 time decodes to a UTC Date near the write, whatever its fraction", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        const before = Date.now()
        yield* client.streamWrite(name, { type: "Timed", data: {} })
        const [message] = yield* client.streamGet(name)
        const time = message!.time.getTime()
        assert.isFalse(Number.isNaN(time))
        // Whole-second backends round down; allow for clock skew against a remote server.
        assert.isAtLeast(time, before - 60_000)
        assert.isAtMost(time, Date.now() + 60_000)
      }))
  })

  describe("LAST", () => {
    it.scoped("LAST-001 the last of 5 messages is at position 4", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        yield* writeN(client, name, 5)
        const last = yield* client.streamLast(name)
        assert.deepStrictEqual(Option.map(last, (m) => [m.position, m.streamName]), Option.some([4, name]))
      }))

    it.scoped("LAST-002 a missing stream gives none", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        assert.deepStrictEqual(yield* client.streamLast(stream("missing")), Option.none())
      }))

    it.scoped("LAST-003 a type filter finds the last message of that type", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        for (const type of ["TypeA", "TypeB", "TypeA", "TypeB", "TypeA"]) {
          yield* client.streamWrite(name, { type, data: {} })
        }
        const last = yield* client.streamLast(name, { type: "TypeB" })
        assert.deepStrictEqual(Option.map(last, (m) => [m.position, m.type]), Option.some([3, "TypeB"]))
      }))

    it.scoped("LAST-004 a type filter with no match gives none", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        yield* writeN(client, name, 2, "TypeA")
        assert.deepStrictEqual(yield* client.streamLast(name, { type: "TypeZ" }), Option.none())
      }))
  })

  describe("VERSION", () => {
    it.scoped("VERSION-001 a missing stream has no version", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        assert.deepStrictEqual(yield* client.streamVersion(stream("missing")), Option.none())
      }))

    it.scoped("VERSION-002 three messages give version 2", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        yield* writeN(client, name, 3)
        assert.deepStrictEqual(yield* client.streamVersion(name), Option.some(2))
      }))

    it.scoped("VERSION-003 one message then a write gives version 1", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        yield* writeN(client, name, 1)
        assert.deepStrictEqual(yield* client.streamVersion(name), Option.some(0))
        yield* writeN(client, name, 1)
        assert.deepStrictEqual(yield* client.streamVersion(name), Option.some(1))
      }))
  })

  describe("CATEGORY", () => {
    it.scoped("CATEGORY-001 messages of every stream of the category come back", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const cat = category("test")
        for (const id of [1, 2, 3]) yield* client.streamWrite(`${cat}-${id}`, { type: "T", data: { id } })
        yield* client.streamWrite(stream("other"), { type: "T", data: {} })
        const messages = yield* client.categoryGet(cat)
        assert.deepStrictEqual(messages.map((m) => m.streamName), [`${cat}-1`, `${cat}-2`, `${cat}-3`])
      }))

    it.scoped("CATEGORY-002 position selects messages at or after that global position", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const cat = category()
        const written = yield* Effect.forEach([1, 2, 3, 4, 5], (id) =>
          client.streamWrite(`${cat}-${id}`, { type: "T", data: {} }))
        const from = written[2]!.globalPosition
        const messages = yield* client.categoryGet(cat, { position: from })
        assert.deepStrictEqual(
          messages.map((m) =>
            m.globalPosition
          ),
          written.slice(2).map((w) => w.globalPosition)
        )
      }))

    it.scoped("CATEGORY-003 batchSize 10 gives exactly 10", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const cat = category()
        for (let id = 0; id < 15; id++) yield* client.streamWrite(`${cat}-${id % 4}`, { type: "T", data: { id } })
        assert.strictEqual((yield* client.categoryGet(cat, { batchSize: 10 })).length, 10)
      }))

    it.scoped("CATEGORY-004 category messages carry their stream name", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const cat = category()
        yield* client.streamWrite(`${cat}-a`, { type: "T", data: { n: 1 }, metadata: { m: 1 } })
        yield* client.streamWrite(`${cat}-b+retry`, { type: "U", data: { n: 2 } })
        const messages = yield* client.categoryGet(cat)
        assert.deepStrictEqual(
          messages.map((m) => [m.streamName, m.type, m.position, m.data, m.metadata]),
          [[`${cat}-a`, "T", 0, { n: 1 }, Option.some({ m: 1 })], [`${cat}-b+retry`, "U", 0, { n: 2 }, Option.none()]]
        )
        assert.isTrue(messages.every((m) => uuid.test(m.id) && m.time instanceof Date))
      }))

    it.scoped("CATEGORY-005 consumerGroup {0, 2} gives exactly member 0's streams by the MD5 cardinal-id hash", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const cat = category()
        const names = ["1", "2", "3", "4", "123", "123+retry", "abc", "x-7"].map((id) => `${cat}-${id}`)
        for (const name of names) yield* client.streamWrite(name, { type: "T", data: {} })
        const member0 = yield* client.categoryGet(cat, { consumerGroup: { member: 0, size: 2 } })
        const member1 = yield* client.categoryGet(cat, { consumerGroup: { member: 1, size: 2 } })
        assert.deepStrictEqual(
          member0.map((m) => m.streamName),
          names.filter((name) => StreamName.groupMember(name, 2) === 0)
        )
        assert.deepStrictEqual(
          [...member0, ...member1].map((m) => m.streamName).sort(),
          [...names].sort()
        )
      }))

    it.scoped("CATEGORY-006 correlation keeps only messages whose correlationStreamName has that category", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const cat = category()
        yield* client.streamWrite(`${cat}-1`, {
          type: "T",
          data: { n: 1 },
          metadata: { correlationStreamName: "workflow-123" }
        })
        yield* client.streamWrite(`${cat}-2`, {
          type: "T",
          data: { n: 2 },
          metadata: { correlationStreamName: "other-456" }
        })
        yield* client.streamWrite(`${cat}-3`, { type: "T", data: { n: 3 } })
        const messages = yield* client.categoryGet(cat, { correlation: "workflow" })
        assert.deepStrictEqual(messages.map((m) => m.data), [{ n: 1 }])
      }))

    it.scoped("CATEGORY-007 a category with no messages gives []; the empty category reads the namespace", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        assert.deepStrictEqual(yield* client.categoryGet(category("nothing")), [])
        const a = stream("alpha")
        const b = stream("beta")
        yield* client.streamWrite(a, { type: "T", data: {} })
        yield* client.streamWrite(b, { type: "T", data: {} })
        const everything = yield* client.categoryGet("")
        assert.deepStrictEqual(everything.map((m) => m.streamName), [a, b])
      }))

    it.scoped("CATEGORY-008 results are in ascending global-position order across streams", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const cat = category()
        for (const id of [3, 1, 2, 1, 3, 2]) yield* client.streamWrite(`${cat}-${id}`, { type: "T", data: {} })
        const positions = (yield* client.categoryGet(cat)).map((m) => m.globalPosition)
        assert.strictEqual(positions.length, 6)
        assert.deepStrictEqual(positions, [...positions].sort((x, y) => x - y))
      }))
  })

  describe("NS", () => {
    /** Creates a namespace with the admin client and deletes it (if still there) when the scope closes. */
    const created = (admin: EventoClient.EventoClient.Service, options?: EventoClient.NamespaceCreateOptions) => {
      const name = `sdk-ns-${suffix()}`
      return Effect.acquireRelease(
        admin.namespaceCreate(name, options),
        () => Effect.ignore(admin.namespaceDelete(name))
      )
    }

    it.scoped("NS-001 create returns namespace, an ns_ token and createdAt", () =>
      Effect.gen(function*() {
        const admin = yield* adminClient
        const result = yield* created(admin)
        assert.match(result.namespace, /^sdk-ns-/)
        assert.isTrue(Redacted.value(result.token).startsWith("ns_"))
        assert.isFalse(String(result.token).includes("ns_"))
        assert.instanceOf(result.createdAt, Date)
        const client = yield* admin.withToken(result.token)
        assert.strictEqual(client.namespace, result.namespace)
        assert.strictEqual((yield* client.streamWrite(stream(), { type: "T", data: {} })).position, 0)
      }))

    it.scoped("NS-002 create with a custom valid token echoes that token", () =>
      Effect.gen(function*() {
        const admin = yield* adminClient
        const name = `sdk-ns-${suffix()}`
        const token = Token.encode(name, randomBytes(32).toString("hex"))
        const result = yield* Effect.acquireRelease(
          admin.namespaceCreate(name, { token: Redacted.make(token), description: "custom" }),
          () => Effect.ignore(admin.namespaceDelete(name))
        )
        assert.strictEqual(Redacted.value(result.token), token)
      }))

    it.scoped("NS-003 a duplicate create is NamespaceExists", () =>
      Effect.gen(function*() {
        const admin = yield* adminClient
        const first = yield* created(admin)
        const error = yield* failure(admin.namespaceCreate(first.namespace))
        assert.strictEqual(error._tag, "NamespaceExists")
        assert.strictEqual(error._tag === "NamespaceExists" && error.namespace, first.namespace)
      }))

    it.scoped("NS-004 delete returns namespace, deletedAt and messagesDeleted", () =>
      Effect.gen(function*() {
        const admin = yield* adminClient
        const first = yield* created(admin)
        const deleted = yield* admin.namespaceDelete(first.namespace)
        assert.strictEqual(deleted.namespace, first.namespace)
        assert.instanceOf(deleted.deletedAt, Date)
        assert.isNumber(deleted.messagesDeleted)
      }))

    it.scoped("NS-005 deleting a missing namespace is NamespaceNotFound", () =>
      Effect.gen(function*() {
        const admin = yield* adminClient
        const name = `missing-${suffix()}`
        const error = yield* failure(admin.namespaceDelete(name))
        assert.strictEqual(error._tag, "NamespaceNotFound")
        assert.strictEqual(error._tag === "NamespaceNotFound" && error.namespace, name)
      }))

    it.scoped("NS-006 list returns namespace, description, createdAt and messageCount", () =>
      Effect.gen(function*() {
        const admin = yield* adminClient
        const mine = yield* created(admin, { description: "listed" })
        const list = yield* admin.namespaceList
        const found = list.find((summary) => summary.namespace === mine.namespace)
        assert.isDefined(found)
        assert.strictEqual(found!.description, "listed")
        assert.instanceOf(found!.createdAt, Date)
        assert.isNumber(found!.messageCount)
      }))

    it.scoped("NS-007 info on a namespace with 5 messages gives messageCount 5", () =>
      Effect.gen(function*() {
        const admin = yield* adminClient
        const { client, namespace } = yield* freshClient()
        yield* writeN(client, stream(), 3)
        yield* writeN(client, stream(), 2)
        const info = yield* admin.namespaceInfo(namespace)
        assert.strictEqual(info.namespace, namespace)
        assert.strictEqual(info.messageCount, 5)
        assert.isNumber(info.streamCount)
        assert.instanceOf(info.createdAt, Date)
      }))

    it.scoped("NS-008 info on a missing namespace is NamespaceNotFound", () =>
      Effect.gen(function*() {
        const admin = yield* adminClient
        const error = yield* failure(admin.namespaceInfo(`missing-${suffix()}`))
        assert.strictEqual(error._tag, "NamespaceNotFound")
      }))

    it.scoped("ns.streams lists the token's streams sorted, with prefix, cursor and limit bounds", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        yield* writeN(client, "acct-0", 3)
        yield* writeN(client, "acct-1", 2)
        yield* writeN(client, "order-1", 1)
        yield* writeN(client, "solo", 1)
        const all = yield* client.namespaceStreams()
        assert.deepStrictEqual(all.map((s) => [s.stream, s.version]), [
          ["acct-0", 2],
          ["acct-1", 1],
          ["order-1", 0],
          ["solo", 0]
        ])
        assert.isTrue(all.every((s) => s.lastActivity instanceof Date))
        const prefixed = yield* client.namespaceStreams({ prefix: "acct" })
        assert.deepStrictEqual(prefixed.map((s) => s.stream), ["acct-0", "acct-1"])
        const page = yield* client.namespaceStreams({ cursor: "acct-0", limit: 2 })
        assert.deepStrictEqual(page.map((s) => s.stream), ["acct-1", "order-1"])
        for (const limit of [0, 1001]) {
          assert.strictEqual((yield* failure(client.namespaceStreams({ limit })))._tag, "InvalidRequest")
        }
      }))

    it.scoped("ns.categories counts streams and messages per category", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        yield* writeN(client, "acct-0", 3)
        yield* writeN(client, "acct-1", 2)
        yield* writeN(client, "order-1", 1)
        yield* writeN(client, "solo", 1)
        const categories = yield* client.namespaceCategories
        assert.deepStrictEqual(categories, [
          { category: "acct", streamCount: 2, messageCount: 5 },
          { category: "order", streamCount: 1, messageCount: 1 },
          { category: "solo", streamCount: 1, messageCount: 1 }
        ])
      }))
  })

  describe("SYS", () => {
    it.scoped("SYS-001 the version is a semver string", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        assert.match(yield* client.systemVersion, semver)
      }))

    it.scoped("SYS-002 health has a status", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        assert.strictEqual((yield* client.systemHealth).status, "ok")
      }))
  })

  describe("AUTH", () => {
    it.scoped("AUTH-001 a valid token lets a write succeed, in the token's namespace", () =>
      Effect.gen(function*() {
        const { client, namespace, token } = yield* freshClient()
        assert.strictEqual(client.namespace, namespace)
        assert.strictEqual(Token.decodeNamespace(Redacted.value(token))._tag, "Right")
        assert.strictEqual((yield* client.streamWrite(stream(), { type: "T", data: {} })).position, 0)
      }))

    it.scoped("AUTH-002 a missing token is EventoAuthError required", () =>
      Effect.gen(function*() {
        const { token } = yield* freshClient()
        const client = yield* clientWith(token, withoutAuthorization)
        const error = yield* failure(client.streamGet(stream()))
        assert.deepStrictEqual(error._tag === "EventoAuthError" && error.reason, "required")
      }))

    it.scoped("AUTH-003 a malformed token is refused: locally as invalid-token, by the server as unauthorized", () =>
      Effect.gen(function*() {
        const target = yield* EventoTest.EventoTarget
        const local = yield* Effect.flip(EventoClient.make({ url: target.url, token: "ns_not-a-token" }))
        assert.deepStrictEqual(local._tag === "EventoAuthError" && local.reason, "invalid-token")
        const { namespace, token } = yield* freshClient()
        // A token the server cannot parse (the client never sends one) is AUTH_INVALID_TOKEN.
        const garbled = yield* clientWith(token, HttpClientRequest.bearerToken("ns_x"))
        const invalid = yield* failure(garbled.streamGet(stream()))
        assert.deepStrictEqual(invalid._tag === "EventoAuthError" && invalid.reason, "invalid-token")
        // Well formed, wrong secret: the hash does not match.
        const wrong = yield* EventoClient.make({ url: target.url, token: Token.encode(namespace, "f".repeat(64)) })
        const refused = yield* failure(wrong.streamGet(stream()))
        assert.deepStrictEqual(refused._tag === "EventoAuthError" && refused.reason, "unauthorized")
      }))

    it.scoped("AUTH-004 another namespace's token does not see the stream", () =>
      Effect.gen(function*() {
        const one = yield* freshClient()
        const two = yield* freshClient()
        const name = stream()
        yield* one.client.streamWrite(name, { type: "T", data: {} })
        assert.deepStrictEqual(yield* two.client.streamGet(name), [])
        assert.deepStrictEqual(yield* two.client.streamVersion(name), Option.none())
      }))
  })

  describe("ERROR", () => {
    it.scoped("ERROR-001 an unknown method is MethodNotFound", () =>
      Effect.gen(function*() {
        const { token } = yield* freshClient()
        // The SDK only sends methods it knows; rename one on the way out to reach the server's answer.
        const client = yield* clientWith(token, (request) =>
          HttpClientRequest.setBody(request, HttpBody.unsafeJson(["no.such.method", 1])))
        const error = yield* failure(client.systemVersion)
        assert.strictEqual(error._tag, "MethodNotFound")
        assert.strictEqual(error._tag === "MethodNotFound" && error.method, "sys.version")
      }))

    it.scoped("ERROR-002 a missing required argument is refused by the SDK without a request", () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* proxiedClient()
        const missing: EventoClient.NewMessage = JSON.parse("{\"type\":\"T\"}")
        const noMessage: EventoClient.NewMessage = JSON.parse("null")
        for (const attempt of [client.streamWrite(stream(), missing), client.streamWrite(stream(), noMessage)]) {
          const error = yield* failure(attempt)
          assert.strictEqual(error._tag, "InvalidRequest")
        }
        assert.deepStrictEqual(yield* proxy.requests, [])
      }))

    it.scoped("ERROR-003 a wrong argument type (numeric stream name) is refused by the SDK without a request", () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* proxiedClient()
        const numeric: string = JSON.parse("12")
        const error = yield* failure(client.streamWrite(numeric, { type: "T", data: {} }))
        assert.strictEqual(error._tag, "InvalidRequest")
        assert.include(error.message, "stream name")
        assert.deepStrictEqual(yield* proxy.requests, [])
      }))

    it.scoped("ERROR-004 a refused connection is EventoUnavailable", () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* proxiedClient()
        yield* proxy.down()
        const error = yield* failure(client.streamWrite(stream(), { type: "T", data: {} }))
        assert.strictEqual(error._tag, "EventoUnavailable")
        assert.include(error.message, "stream.write")
        yield* proxy.up()
        assert.strictEqual((yield* client.streamWrite(stream(), { type: "T", data: {} })).position, 0)
      }))

    it.scoped("ERROR-005 a 200 that is not JSON is EventoProtocolError showing what came", () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* proxiedClient()
        yield* proxy.garbageNext(1)
        const error = yield* failure(client.streamVersion(stream()))
        assert.strictEqual(error._tag, "EventoProtocolError")
        assert.include(error.message, "stream.version")
        assert.include(error.message, "expected JSON")
        assert.include(error.message, "502 Bad Gateway")
      }))

    it.scoped("ERROR-006 a server that does not answer within a short timeout is EventoTimeout", () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* proxiedClient({ timeout: "200 millis" })
        yield* proxy.stall("2 seconds")
        const started = Date.now()
        const error = yield* failure(client.streamGet(stream()))
        assert.strictEqual(error._tag, "EventoTimeout")
        assert.strictEqual(error._tag === "EventoTimeout" && error.method, "stream.get")
        assert.isBelow(Date.now() - started, 1500)
      }))

    it.scoped("ERROR-007 HTTP 500 is EventoServerError with status and code", () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* proxiedClient()
        yield* proxy.failNext(1, 500, { error: { code: "BACKEND_ERROR", message: "database is gone" } })
        const coded = yield* failure(client.streamGet(stream()))
        assert.deepStrictEqual(
          coded._tag === "EventoServerError" && [coded.status, coded.code, coded.message],
          [500, "BACKEND_ERROR", "database is gone"]
        )
        yield* proxy.failNext(1, 503, "<html>Service Unavailable</html>")
        const page = yield* failure(client.streamGet(stream()))
        assert.deepStrictEqual(page._tag === "EventoServerError" && page.status, 503)
        assert.include(page.message, "Service Unavailable")
      }))
  })

  describe("ENCODING", () => {
    const roundTrip = (data: EventoClient.JsonObject, metadata?: EventoClient.JsonObject) =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        yield* client.streamWrite(name, { type: "Encoded", data, metadata })
        const [message] = yield* client.streamGet(name)
        return message!
      })

    it.scoped("ENCODING-001 UTF-8 and emoji in data round-trip", () =>
      Effect.gen(function*() {
        const data = { text: "héllo wörld 你好 🎉", rtl: "مرحبا", combining: "e\u0301" }
        assert.deepStrictEqual((yield* roundTrip(data)).data, data)
      }))

    it.scoped("ENCODING-002 Unicode in metadata round-trips", () =>
      Effect.gen(function*() {
        const metadata = { user: "Zoë Ødegård", note: "日本語 ✓ 🚀" }
        assert.deepStrictEqual((yield* roundTrip({}, metadata)).metadata, Option.some(metadata))
      }))

    it.scoped("ENCODING-003 the stream name test-stream_123.abc works", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = `test-stream_123.abc${suffix()}`
        assert.strictEqual((yield* client.streamWrite(name, { type: "T", data: {} })).position, 0)
        assert.strictEqual((yield* client.streamGet(name))[0]?.streamName, name)
      }))

    it.scoped("ENCODING-004 an empty string stays an empty string", () =>
      Effect.gen(function*() {
        assert.deepStrictEqual((yield* roundTrip({ empty: "" })).data, { empty: "" })
      }))

    it.scoped("ENCODING-005 booleans keep their type", () =>
      Effect.gen(function*() {
        assert.deepStrictEqual((yield* roundTrip({ t: true, f: false })).data, { t: true, f: false })
      }))

    it.scoped("ENCODING-006 null stays null", () =>
      Effect.gen(function*() {
        assert.deepStrictEqual((yield* roundTrip({ nil: null })).data, { nil: null })
      }))

    it.scoped("ENCODING-007 integer, float, negative and zero numbers are preserved", () =>
      Effect.gen(function*() {
        const data = { int: 42, float: 3.14159, neg: -7, negFloat: -0.5, zero: 0, big: 9007199254740991 }
        assert.deepStrictEqual((yield* roundTrip(data)).data, data)
      }))

    it.scoped("ENCODING-008 deeply nested objects are preserved", () =>
      Effect.gen(function*() {
        const data = { a: { b: { c: { d: { e: { f: { g: [1, { h: "deep" }] } } } } } } }
        assert.deepStrictEqual((yield* roundTrip(data)).data, data)
      }))

    it.scoped("ENCODING-009 mixed arrays are preserved", () =>
      Effect.gen(function*() {
        const data = { mixed: [1, "a", null, true, { k: [] }, [2.5, "b"]] }
        assert.deepStrictEqual((yield* roundTrip(data)).data, data)
      }))

    it.scoped("ENCODING-010 about 100 KB of data round-trips", () =>
      Effect.gen(function*() {
        const data = { blob: "x".repeat(100_000), more: "ü".repeat(1000) }
        assert.deepStrictEqual((yield* roundTrip(data)).data, data)
      }))
  })

  describe("EDGE", () => {
    it.scoped("EDGE-001 batchSize 0 gives [] (Postgres) or every message (SQLite), never an error", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        yield* writeN(client, name, 5)
        const messages = yield* client.streamGet(name, { batchSize: 0 })
        assert.include([0, 5], messages.length)
      }))

    it.scoped("EDGE-002 position -1 reads from the start", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        yield* writeN(client, name, 5)
        const messages = yield* client.streamGet(name, { position: -1 })
        assert.deepStrictEqual(messages.map((m) => m.position), [0, 1, 2, 3, 4])
      }))

    it.scoped("EDGE-003 batchSize 1000000 is refused with InvalidRequest (the server does not cap)", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        yield* writeN(client, name, 5)
        const error = yield* failure(client.streamGet(name, { batchSize: 1_000_000 }))
        assert.strictEqual(error._tag, "InvalidRequest")
        assert.include(error.message, "batchSize")
      }))

    it.scoped("EDGE-004 the names a, stream-with-many-dashes, stream123 and UPPERCASE all work", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        for (const name of ["a", "stream-with-many-dashes", "stream123", "UPPERCASE"]) {
          assert.strictEqual((yield* client.streamWrite(name, { type: "T", data: {} })).position, 0)
          assert.strictEqual((yield* client.streamGet(name)).length, 1)
        }
      }))

    it.scoped("EDGE-005 ten concurrent writes all succeed with unique positions", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        const results = yield* Effect.forEach(
          Array.from({ length: 10 }, (_, i) => i),
          (i) => client.streamWrite(name, { type: "T", data: { i } }),
          { concurrency: 10 }
        )
        assert.deepStrictEqual(results.map((r) => r.position).sort((x, y) => x - y), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        assert.strictEqual(new Set(results.map((r) => r.globalPosition)).size, 10)
      }))

    it.scoped("EDGE-006 position 100 on a 5-message stream gives []", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        yield* writeN(client, name, 5)
        assert.deepStrictEqual(yield* client.streamGet(name, { position: 100 }), [])
      }))

    it.scoped("EDGE-007 expectedVersion -1 succeeds on a new stream and conflicts once it exists", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        const first = yield* client.streamWrite(name, { type: "T", data: {} }, { expectedVersion: -1 })
        assert.strictEqual(first.position, 0)
        const error = yield* failure(client.streamWrite(name, { type: "T", data: {} }, { expectedVersion: -1 }))
        assert.deepStrictEqual(error._tag === "StreamVersionConflict" && error.expectedVersion, -1)
      }))

    it.scoped("EDGE-008 expectedVersion 0 on a new stream conflicts", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const error = yield* failure(client.streamWrite(stream(), { type: "T", data: {} }, { expectedVersion: 0 }))
        assert.strictEqual(error._tag, "StreamVersionConflict")
      }))
  })

  describe("SSE", () => {
    it.scoped("SSE-001 a stream subscription receives a poke for a later write", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        const pokes = yield* collectPokes(client.subscribe({ stream: name }), 1)
        yield* settle
        const written = yield* client.streamWrite(name, { type: "T", data: {} })
        assert.deepStrictEqual(yield* pokes.await, [{ stream: name, ...written }])
      }))

    it.scoped("SSE-002 a category subscription receives a poke for a write to one of its streams", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const cat = category()
        const pokes = yield* collectPokes(client.subscribe({ category: cat }), 1)
        yield* settle
        const written = yield* client.streamWrite(`${cat}-123`, { type: "T", data: {} })
        assert.deepStrictEqual(yield* pokes.await, [{ stream: `${cat}-123`, ...written }])
      }))

    it.scoped("SSE-003 subscribing from position 3 of 5 replays 3 and 4, then a new message", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const name = stream()
        yield* writeN(client, name, 5)
        const pokes = yield* collectPokes(client.subscribe({ stream: name }, { position: 3 }), 3)
        yield* settle
        yield* client.streamWrite(name, { type: "T", data: {} })
        assert.deepStrictEqual((yield* pokes.await).map((p) => p.position), [3, 4, 5])
      }))

    it.scoped("SSE-004 subscribing without a token ends with EventoAuthError required, without retrying", () =>
      Effect.gen(function*() {
        const target = yield* EventoTest.EventoTarget
        const { token } = yield* freshClient()
        const proxy = yield* FaultProxy.make({ upstream: target.url })
        const http = yield* HttpClient.HttpClient
        const client = yield* EventoClient.make({ url: proxy.url, token }).pipe(
          Effect.provideService(HttpClient.HttpClient, HttpClient.mapRequest(http, withoutAuthorization))
        )
        const error = yield* Stream.runDrain(client.subscribe({ stream: stream() })).pipe(Effect.flip)
        assert.deepStrictEqual(error._tag === "EventoAuthError" && error.reason, "required")
        yield* Effect.sleep("300 millis")
        assert.strictEqual((yield* proxy.requests).length, 1)
      }))

    it.scoped("SSE-005 consumerGroup {0, 2} replays only member 0's partition (the category.get hash)", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const cat = category()
        const names = ["1", "2", "3", "4", "abc", "123"].map((id) => `${cat}-${id}`)
        for (const name of names) yield* client.streamWrite(name, { type: "T", data: {} })
        const mine = names.filter((name) => StreamName.groupMember(name, 2) === 0)
        const pokes = yield* collectPokes(
          client.subscribe({ category: cat, consumerGroup: { member: 0, size: 2 } }),
          mine.length
        )
        assert.deepStrictEqual((yield* pokes.await).map((p) => p.stream), mine)
      }))

    it.scoped("SSE-006 two subscriptions receive their own pokes independently", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const first = stream("first")
        const second = stream("second")
        const one = yield* collectPokes(client.subscribe({ stream: first }), 2)
        const two = yield* collectPokes(client.subscribe({ stream: second }), 1)
        yield* settle
        yield* client.streamWrite(first, { type: "T", data: {} })
        yield* client.streamWrite(second, { type: "T", data: {} })
        yield* client.streamWrite(first, { type: "T", data: {} })
        assert.deepStrictEqual((yield* one.await).map((p) => [p.stream, p.position]), [[first, 0], [first, 1]])
        assert.deepStrictEqual((yield* two.await).map((p) => [p.stream, p.position]), [[second, 0]])
      }))

    it.scoped("SSE-007 after a dropped connection the subscription reconnects and resumes after the last poke", () =>
      Effect.gen(function*() {
        const { client, direct, proxy } = yield* proxiedClient()
        const name = stream()
        const pokes = yield* collectPokes(client.subscribe({ stream: name }), 4)
        yield* settle
        yield* writeN(direct, name, 2)
        yield* Effect.sleep("200 millis")
        yield* proxy.down()
        yield* writeN(direct, name, 2)
        yield* Effect.sleep("300 millis")
        yield* proxy.up()
        assert.deepStrictEqual((yield* pokes.await).map((p) => p.position), [0, 1, 2, 3])
        const resumed = (yield* proxy.requests).filter((r) => r.path.startsWith("/subscribe"))
        assert.include(resumed[resumed.length - 1]!.path, "position=2")
      }))

    it.scoped("SSE-008 a poke carries stream, position and globalPosition as written", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const cat = category()
        const written = yield* client.streamWrite(`${cat}-1`, { type: "T", data: {} })
        const [poke] = yield* (yield* collectPokes(client.subscribe({ category: cat }), 1)).await
        assert.deepStrictEqual(poke, {
          stream: `${cat}-1`,
          position: written.position,
          globalPosition: written.globalPosition
        })
        assert.deepStrictEqual(Object.keys(poke!).sort(), ["globalPosition", "position", "stream"])
      }))

    it.scoped("SSE-009 members 0 and 1 of 2 get disjoint streams that together cover all 4", () =>
      Effect.gen(function*() {
        const { client } = yield* freshClient()
        const cat = category()
        const names = [1, 2, 3, 4].map((id) => `${cat}-${id}`)
        for (const name of names) yield* client.streamWrite(name, { type: "T", data: {} })
        const share = (member: number) =>
          Effect.flatMap(
            collectPokes(
              client.subscribe({ category: cat, consumerGroup: { member, size: 2 } }),
              names.filter((name) => StreamName.groupMember(name, 2) === member).length
            ),
            (pokes) => pokes.await
          )
        const zero = (yield* share(0)).map((p) => p.stream)
        const one = (yield* share(1)).map((p) => p.stream)
        assert.isTrue(zero.every((name) => !one.includes(name)))
        assert.deepStrictEqual([...zero, ...one].sort(), [...names].sort())
      }))
  })
})
