/**
 * The in-memory store and its protocol handling, checked against PROTOCOL.md (Postgres backend, auth enforced)
 * through the same handler the HTTP server and the in-process client use, then `EventoMemory.layer` end to end.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { EventoClient } from "../src/EventoClient.js"
import * as EventoMemory from "../src/EventoMemory.js"
import * as Protocol from "../src/internal/memory/protocol.js"
import { MemoryStore } from "../src/internal/memory/store.js"
import * as Token from "../src/internal/memory/token.js"
import * as StreamName from "../src/internal/streamName.js"

const admin = Token.defaultAdminToken

interface Reply {
  readonly status: number
  // Answers are checked field by field against the protocol; a schema per answer would restate the server.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly body: any
  readonly text: string
}

/** A fresh store with `default` and namespace `ns`, its handler, and raw RPC calls through it. */
const setup = (now?: () => number) =>
  Effect.gen(function*() {
    const store = new MemoryStore(now)
    store.createNamespace("default", admin, "Default namespace")
    const token = Token.generate("ns")
    store.createNamespace("ns", token, "")
    const handler = yield* Protocol.make(store)
    const request = (request: Partial<Protocol.Request>) =>
      handler.handle({ method: "POST", url: "/rpc", headers: {}, body: "", ...request }).pipe(
        Effect.map((response): Reply => {
          const text = typeof response.body === "string" ? response.body : ""
          let body: unknown
          try {
            body = JSON.parse(text)
          } catch {
            body = undefined
          }
          return { status: response.status, body, text }
        })
      )
    const call = (body: unknown, as: string = token) =>
      request({
        headers: { authorization: `Bearer ${as}` },
        body: typeof body === "string" ? body : JSON.stringify(body)
      })
    const write = (stream: string, message: object = { type: "T", data: {} }, options?: object) =>
      call(options === undefined ? ["stream.write", stream, message] : ["stream.write", stream, message, options])
    return { store, handler, token, request, call, write }
  })

const expectError = (reply: Reply, status: number, code: string, message?: string | RegExp) => {
  assert.strictEqual(reply.status, status, reply.text)
  assert.strictEqual(reply.body.error.code, code)
  if (typeof message === "string") assert.strictEqual(reply.body.error.message, message)
  else if (message !== undefined) assert.match(reply.body.error.message, message)
}

describe("in-memory store: writes", () => {
  it.scoped("numbers global positions from 1 per namespace, with a gap after a duplicate id only", () =>
    Effect.gen(function*() {
      const { call, write } = yield* setup()
      const id = "aaaa0001-1111-4222-8333-444455556666"
      assert.deepStrictEqual((yield* write("a-1")).body, { globalPosition: 1, position: 0 })
      assert.deepStrictEqual((yield* write("a-1", { type: "T", data: {} }, { id })).body, {
        globalPosition: 2,
        position: 1
      })
      expectError(yield* write("b-1", { type: "T", data: {} }, { id }), 500, "BACKEND_ERROR")
      expectError(yield* write("a-1", { type: "T", data: {} }, { expectedVersion: 7 }), 409, "STREAM_VERSION_CONFLICT")
      expectError(yield* write("a-1", { type: "T", data: {} }, { id: "nope" }), 500, "BACKEND_ERROR")
      expectError(yield* write("a-1", { type: "", data: {} }), 400, "INVALID_REQUEST")
      // The duplicate drew 3; the conflict, the bad id and the invalid request drew nothing.
      assert.deepStrictEqual((yield* write("b-1")).body, { globalPosition: 4, position: 0 })

      const other = yield* call(["ns.create", "other"], admin)
      assert.deepStrictEqual((yield* call(["stream.write", "a-1", { type: "T", data: {} }], other.body.token)).body, {
        globalPosition: 1,
        position: 0
      })
    }))

  it.scoped("applies expectedVersion exactly: -1 for a new stream, the last position otherwise", () =>
    Effect.gen(function*() {
      const { write } = yield* setup()
      const conflict = "version conflict: expected version does not match stream version"
      assert.strictEqual((yield* write("s-1", { type: "T", data: {} }, { expectedVersion: -1 })).status, 200)
      const again = yield* write("s-1", { type: "T", data: {} }, { expectedVersion: -1 })
      expectError(again, 409, "STREAM_VERSION_CONFLICT", conflict)
      assert.isUndefined(again.body.error.details)
      expectError(yield* write("s-2", { type: "T", data: {} }, { expectedVersion: 0 }), 409, "STREAM_VERSION_CONFLICT")
      expectError(yield* write("s-1", { type: "T", data: {} }, { expectedVersion: -2 }), 409, "STREAM_VERSION_CONFLICT")
      assert.deepStrictEqual((yield* write("s-1", { type: "T", data: {} }, { expectedVersion: 0.9 })).body, {
        globalPosition: 2,
        position: 1
      })
      expectError(
        yield* write("s-1", { type: "T", data: {} }, { expectedVersion: null }),
        400,
        "INVALID_REQUEST",
        "options.expectedVersion must be a number"
      )
      expectError(yield* write("s-1", { type: "T", data: {} }, { expectedVersion: "1" }), 400, "INVALID_REQUEST")
    }))

  it.scoped("generates UUIDv7 ids and stores custom ids in canonical lowercase", () =>
    Effect.gen(function*() {
      const { call, write } = yield* setup()
      yield* write("id-1")
      yield* write("id-1", { type: "T", data: {} }, { id: "" })
      yield* write("id-1", { type: "T", data: {} }, { id: "AAAA0002-1111-4222-8333-444455556666" })
      yield* write("id-1", { type: "T", data: {} }, { id: "{aaaa0003-1111-4222-8333-444455556666}" })
      yield* write("id-1", { type: "T", data: {} }, { id: "aaaa000411114222833344445555666F" })
      const rows = (yield* call(["stream.get", "id-1"])).body as Array<Array<unknown>>
      const ids = rows.map((row) => row[0] as string)
      assert.match(ids[0]!, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      assert.match(ids[1]!, /^[0-9a-f]{8}-[0-9a-f]{4}-7/)
      assert.deepStrictEqual(ids.slice(2), [
        "aaaa0002-1111-4222-8333-444455556666",
        "aaaa0003-1111-4222-8333-444455556666",
        "aaaa0004-1111-4222-8333-44445555666f"
      ])
    }))

  it.scoped("answers a bad or duplicate id with a 500 BACKEND_ERROR in the Postgres backend's words", () =>
    Effect.gen(function*() {
      const { write } = yield* setup()
      const id = "aaaa0001-1111-4222-8333-444455556666"
      yield* write("d-1", { type: "T", data: {} }, { id })
      for (const stream of ["d-1", "d-2"]) {
        expectError(
          yield* write(stream, { type: "T", data: {} }, { id: id.toUpperCase() }),
          500,
          "BACKEND_ERROR",
          "Failed to write message: failed to write message: ERROR: duplicate key value violates unique constraint " +
            "\"messages_id\" (SQLSTATE 23505)"
        )
      }
      expectError(
        yield* write("d-1", { type: "T", data: {} }, { id: "not-a-uuid" }),
        500,
        "BACKEND_ERROR",
        "Failed to write message: invalid UUID format: invalid UUID length: 10"
      )
      expectError(
        yield* write("d-1", { type: "T", data: {} }, { id: "aaaa0001-1111-4222-8333-44445555666g" }),
        500,
        "BACKEND_ERROR",
        "Failed to write message: invalid UUID format: invalid UUID format"
      )
      // Go's parser accepts the urn form; the Postgres uuid type does not.
      expectError(
        yield* write("d-1", { type: "T", data: {} }, { id: `urn:uuid:${id.replace("0001", "0009")}` }),
        500,
        "BACKEND_ERROR",
        /invalid input syntax for type uuid/
      )
      expectError(
        yield* write("d-1", { type: "T", data: { s: "a\u0000b" } }),
        500,
        "BACKEND_ERROR",
        /unsupported Unicode escape sequence/
      )
      expectError(
        yield* write("d-1", { type: "T", data: {} }, { id: 5 }),
        400,
        "INVALID_REQUEST",
        "options.id must be a string"
      )
    }))

  it.scoped("validates every write argument with the server's status and message", () =>
    Effect.gen(function*() {
      const { call } = yield* setup()
      const cases: ReadonlyArray<readonly [ReadonlyArray<unknown>, string]> = [
        [["stream.write", "a-1"], "stream.write requires at least 2 arguments: streamName and message"],
        [["stream.write", "", { type: "T", data: {} }], "streamName must be a non-empty string"],
        [["stream.write", 12, { type: "T", data: {} }], "streamName must be a non-empty string"],
        [["stream.write", "a-1", [1]], "message must be an object"],
        [["stream.write", "a-1", { data: {} }], "message.type must be a non-empty string"],
        [["stream.write", "a-1", { type: 7, data: {} }], "message.type must be a non-empty string"],
        [["stream.write", "a-1", { type: "T" }], "message.data must be an object"],
        [["stream.write", "a-1", { type: "T", data: null }], "message.data must be an object"],
        [["stream.write", "a-1", { type: "T", data: [1] }], "message.data must be an object"],
        [["stream.write", "a-1", { type: "T", data: {}, metadata: null }], "message.metadata must be an object"],
        [["stream.write", "a-1", { type: "T", data: {} }, 5], "options must be an object"],
        [["stream.write", "a-1", { type: "T", data: {} }, null], "options must be an object"]
      ]
      for (const [body, message] of cases) {
        expectError(yield* call(body), 400, "INVALID_REQUEST", message)
      }
      assert.strictEqual((yield* call(["stream.write", "a-1", { type: "T", data: {}, metadata: {} }])).status, 200)
      assert.strictEqual((yield* call(["stream.write", "account", { type: "T", data: {} }])).status, 200)
      assert.strictEqual(
        (yield* call(["stream.write", "test-stream_123.abc+x y", { type: "T", data: {} }])).status,
        200
      )
    }))
})

describe("in-memory store: reads", () => {
  const twelve = Effect.gen(function*() {
    const context = yield* setup()
    for (let i = 0; i < 12; i++) yield* context.write("item-1", { type: i % 2 ? "B" : "A", data: { i } })
    const positions = (body: unknown) => (body as Array<Array<number>>).map((row) => row[2])
    const read = (options?: object) =>
      context.call(options === undefined ? ["stream.get", "item-1"] : ["stream.get", "item-1", options])
    return { ...context, positions, read }
  })

  it.scoped("reads a stream from a position, truncating fractions and treating negatives as 0", () =>
    Effect.gen(function*() {
      const { positions, read } = yield* twelve
      assert.deepStrictEqual(positions((yield* read()).body), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
      assert.deepStrictEqual(positions((yield* read({ position: 9.7 })).body), [9, 10, 11])
      assert.deepStrictEqual(positions((yield* read({ position: -1 })).body).length, 12)
      assert.deepStrictEqual((yield* read({ position: 100 })).body, [])
      assert.deepStrictEqual(positions((yield* read({ position: 4, batchSize: 3 })).body), [4, 5, 6])
    }))

  it.scoped("applies batch sizes as the Postgres functions do", () =>
    Effect.gen(function*() {
      const { positions, read } = yield* twelve
      assert.deepStrictEqual((yield* read({ batchSize: 0 })).body, [])
      assert.strictEqual(positions((yield* read({ batchSize: -1 })).body).length, 12)
      assert.strictEqual(positions((yield* read({ batchSize: 10000 })).body).length, 12)
      expectError(yield* read({ batchSize: -5 }), 500, "BACKEND_ERROR", /LIMIT must not be negative/)
      expectError(
        yield* read({ batchSize: 10001 }),
        400,
        "INVALID_REQUEST",
        "options.batchSize must be <= 10000 or -1 for unlimited"
      )
      expectError(yield* read({ batchSize: "3" }), 400, "INVALID_REQUEST", "options.batchSize must be a number")
    }))

  it.scoped("with globalPosition ignores position and limits only by a positive batch size", () =>
    Effect.gen(function*() {
      const { positions, read } = yield* twelve
      assert.deepStrictEqual(positions((yield* read({ globalPosition: 8 })).body), [7, 8, 9, 10, 11])
      assert.deepStrictEqual(positions((yield* read({ globalPosition: 8, position: 1 })).body), [7, 8, 9, 10, 11])
      assert.deepStrictEqual(positions((yield* read({ globalPosition: 8, batchSize: 0 })).body), [7, 8, 9, 10, 11])
      assert.deepStrictEqual(positions((yield* read({ globalPosition: 8, batchSize: -5 })).body), [7, 8, 9, 10, 11])
      assert.deepStrictEqual(positions((yield* read({ globalPosition: 8, batchSize: 2 })).body), [7, 8])
    }))

  it.scoped("answers stream.last and stream.version, null when nothing matches", () =>
    Effect.gen(function*() {
      const { call } = yield* twelve
      assert.strictEqual((yield* call(["stream.last", "item-1"])).body[2], 11)
      assert.strictEqual((yield* call(["stream.last", "item-1", { type: "A" }])).body[2], 10)
      assert.strictEqual((yield* call(["stream.last", "item-1", { type: "Z" }])).body, null)
      assert.strictEqual((yield* call(["stream.last", "item-1", { type: "" }])).body, null)
      assert.strictEqual((yield* call(["stream.last", "item-404"])).body, null)
      assert.strictEqual((yield* call(["stream.version", "item-1"])).body, 11)
      assert.strictEqual((yield* call(["stream.version", "item-404"])).body, null)
      expectError(
        yield* call(["stream.version"]),
        400,
        "INVALID_REQUEST",
        "stream.version requires 1 argument: streamName"
      )
      expectError(yield* call(["stream.get", ""]), 400, "INVALID_REQUEST", "streamName must be a non-empty string")
    }))

  it.scoped("prints times with microseconds in Go's RFC3339Nano, trailing zeros trimmed", () =>
    Effect.gen(function*() {
      let now = 0
      const { call, write } = yield* setup(() => now)
      for (const micros of [1705314600123450, 1705314600000000, 1705314601000001]) {
        now = micros
        yield* write("t-1")
      }
      const rows = (yield* call(["stream.get", "t-1"])).body as Array<Array<unknown>>
      assert.deepStrictEqual(rows.map((row) => row[6]), [
        "2024-01-15T10:30:00.12345Z",
        "2024-01-15T10:30:00Z",
        "2024-01-15T10:30:01.000001Z"
      ])
    }))

  it.scoped("keeps JSON values as Go and JSONB do: sorted keys, no -0, float64 numbers, escaped HTML", () =>
    Effect.gen(function*() {
      const { call, request, token } = yield* setup()
      const raw =
        "[\"stream.write\",\"enc-1\",{\"type\":\"T\",\"data\":{\"z\":1,\"a\":{\"y\":-0,\"b\":1.0},\"big\":12345678901234567890," +
        "\"s\":\"<a & b>\",\"u\":\"héllo 🎉\",\"n\":null,\"l\":[1,\"x\",false,{}]}}]"
      assert.strictEqual((yield* request({ headers: { authorization: `Bearer ${token}` }, body: raw })).status, 200)
      const reply = yield* call(["stream.get", "enc-1"])
      assert.include(
        reply.text,
        "{\"a\":{\"b\":1,\"y\":0},\"big\":12345678901234567000,\"l\":[1,\"x\",false,{}],\"n\":null," +
          "\"s\":\"\\u003ca \\u0026 b\\u003e\",\"u\":\"héllo 🎉\",\"z\":1}"
      )
      const huge = yield* request({
        headers: { authorization: `Bearer ${token}` },
        body: "[\"stream.write\",\"enc-2\",{\"type\":\"T\",\"data\":{\"x\":1e400}}]"
      })
      expectError(huge, 400, "INVALID_REQUEST", "Malformed JSON request")
    }))
})

describe("in-memory store: categories", () => {
  const populated = Effect.gen(function*() {
    const context = yield* setup()
    for (const id of ["1", "2", "3", "4", "5", "6", "abc", "123", "123+retry", "x-7", "", "q+"]) {
      yield* context.write(id === "" ? "cat" : `cat-${id}`, { type: "C", data: { id } })
    }
    yield* context.write("cat-9", { type: "C", data: {}, metadata: { correlationStreamName: "flow-1" } })
    yield* context.write("cat-10", { type: "C", data: {}, metadata: { correlationStreamName: "flows-1" } })
    yield* context.write("cat-11", { type: "C", data: {}, metadata: { correlationStreamName: "flow" } })
    yield* context.write("other-1", { type: "O", data: {} })
    const streams = (reply: Reply) => (reply.body as Array<Array<unknown>>).map((row) => row[1] as string)
    const read = (name: string, options?: object) =>
      context.call(options === undefined ? ["category.get", name] : ["category.get", name, options])
    return { ...context, streams, read }
  })

  it.scoped("reads a category in global order from a global position, 8 elements per message", () =>
    Effect.gen(function*() {
      const { read, streams } = yield* populated
      const all = yield* read("cat")
      assert.strictEqual(all.body.length, 15)
      assert.strictEqual(all.body[0].length, 8)
      assert.deepStrictEqual((all.body as Array<Array<number>>).map((row) => row[4]), [
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
        9,
        10,
        11,
        12,
        13,
        14,
        15
      ])
      assert.deepStrictEqual(streams(yield* read("cat", { position: 14 })), ["cat-10", "cat-11"])
      assert.deepStrictEqual(streams(yield* read("cat", { position: 1, globalPosition: 14 })), ["cat-10", "cat-11"])
      assert.deepStrictEqual(streams(yield* read("cat", { batchSize: 2 })), ["cat-1", "cat-2"])
      assert.deepStrictEqual((yield* read("cat", { batchSize: 0 })).body, [])
      assert.strictEqual((yield* read("", {})).body.length, 16)
      assert.deepStrictEqual((yield* read("cat-1")).body, [])
      assert.deepStrictEqual((yield* read("nothing")).body, [])
      expectError(yield* read("cat", { batchSize: -2 }), 500, "BACKEND_ERROR", /LIMIT must not be negative/)
      expectError(
        yield* read("cat", { batchSize: 10001 }),
        400,
        "INVALID_REQUEST",
        "options.batchSize must be <= 10000 or -1 for unlimited"
      )
    }))

  it.scoped("splits a category among consumer-group members by MD5 of the cardinal id", () =>
    Effect.gen(function*() {
      const { read, streams } = yield* populated
      for (const size of [2, 3, 4]) {
        const seen: Array<string> = []
        for (let member = 0; member < size; member++) {
          const mine = streams(yield* read("cat", { consumerGroup: { member, size } }))
          for (const stream of mine) assert.strictEqual(StreamName.groupMember(stream, size), member, stream)
          seen.push(...mine)
        }
        // Every stream with an id, once; `cat` (no id) belongs to nobody.
        assert.strictEqual(seen.length, 14)
        assert.notInclude(seen, "cat")
      }
      assert.deepStrictEqual(streams(yield* read("cat", { consumerGroup: { member: 1, size: 4 } })), ["cat-2", "cat-9"])
    }))

  it.scoped("validates consumer groups with the server's messages", () =>
    Effect.gen(function*() {
      const { read } = yield* populated
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [{ member: 0 }, "options.consumerGroup requires both member and size"],
        [{ size: 2 }, "options.consumerGroup requires both member and size"],
        [{ member: 2, size: 2 }, "options.consumerGroup.member must be < size"],
        [{ member: 0, size: 0 }, "options.consumerGroup.size must be positive"],
        [{ member: -1, size: 2 }, "options.consumerGroup.member must be non-negative"],
        [3, "options.consumerGroup must be an object"],
        [{ member: "0", size: 2 }, "options.consumerGroup.member must be a number"]
      ]
      for (const [consumerGroup, message] of cases) {
        expectError(yield* read("cat", { consumerGroup }), 400, "INVALID_REQUEST", message)
      }
    }))

  it.scoped("filters by the exact category of metadata.correlationStreamName", () =>
    Effect.gen(function*() {
      const { read, streams } = yield* populated
      assert.deepStrictEqual(streams(yield* read("cat", { correlation: "flow" })), ["cat-9", "cat-11"])
      assert.deepStrictEqual(streams(yield* read("cat", { correlation: "flow-1" })), [])
      assert.deepStrictEqual(streams(yield* read("cat", { correlation: "flows" })), ["cat-10"])
      assert.deepStrictEqual(streams(yield* read("cat", { correlation: "FLOW" })), [])
      assert.deepStrictEqual(
        streams(yield* read("cat", { correlation: "flow", consumerGroup: { member: 0, size: 2 } })),
        ["cat-11"]
      )
    }))

  it.scoped("writes in constant time and reads a small category without scanning the namespace", () =>
    Effect.gen(function*() {
      const { call, store } = yield* setup()
      const namespace = store.namespaces.get("ns")!
      const started = performance.now()
      for (let i = 0; i < 100_000; i++) {
        store.write(namespace, {
          streamName: `bulk-${i % 1000}`,
          type: "T",
          data: { i },
          metadata: undefined,
          id: undefined,
          expectedVersion: undefined
        })
      }
      const writing = performance.now() - started
      yield* call(["stream.write", "rare-1", { type: "T", data: {} }])
      const timed = (name: string, options: object) =>
        Effect.gen(function*() {
          const start = performance.now()
          for (let i = 0; i < 20; i++) yield* call(["category.get", name, options])
          return (performance.now() - start) / 20
        })
      // Reading a one-message category must cost far less than a read that has to look at every message.
      const rare = yield* timed("rare", {})
      const scan = yield* timed("", { correlation: "nothing" })
      assert.strictEqual((yield* call(["category.get", "rare"])).body.length, 1)
      assert.isBelow(writing, 20_000, `100k writes took ${writing} ms`)
      assert.isBelow(rare * 5, scan, `a small category read took ${rare} ms, a full scan ${scan} ms`)
    }))
})

describe("in-memory store: namespaces and system methods", () => {
  it.scoped("creates namespaces with generated or custom tokens and refuses duplicates and collisions", () =>
    Effect.gen(function*() {
      const { call } = yield* setup()
      const created = yield* call(["ns.create", "tenant-a", { description: "A", metadata: { x: 1 } }])
      assert.strictEqual(created.status, 200)
      assert.strictEqual(created.body.namespace, "tenant-a")
      assert.match(created.body.token, /^ns_dGVuYW50LWE_[0-9a-f]{64}$/)
      assert.match(created.body.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/)
      assert.strictEqual((yield* call(["sys.version"], created.body.token)).body, "0.7.0")

      const custom = `ns_${Buffer.from("custom").toString("base64url")}_${"ab".repeat(32)}`
      assert.strictEqual((yield* call(["ns.create", "custom", { token: custom }])).body.token, custom)
      assert.strictEqual((yield* call(["sys.version"], custom)).status, 200)

      expectError(
        yield* call(["ns.create", "tenant-a"]),
        409,
        "NAMESPACE_EXISTS",
        "Namespace 'tenant-a' already exists"
      )
      // Postgres schema names replace every character outside [A-Za-z0-9_], so these two collide.
      expectError(yield* call(["ns.create", "tenant_a"]), 409, "NAMESPACE_EXISTS")
      expectError(
        yield* call(["ns.create", "other", { token: custom }]),
        400,
        "INVALID_REQUEST",
        "Token is for namespace 'custom', not 'other'"
      )
      expectError(
        yield* call(["ns.create", "bad", { token: "ns_x" }]),
        400,
        "INVALID_REQUEST",
        "Invalid token format: invalid token format: expected 2 parts after prefix, got 1"
      )
      expectError(yield* call(["ns.create", ""]), 400, "INVALID_REQUEST", "namespace ID must be a non-empty string")
      expectError(
        yield* call(["ns.create", "m", { metadata: 1 }]),
        400,
        "INVALID_REQUEST",
        "options.metadata must be an object"
      )
    }))

  it.scoped("lists, describes and deletes namespaces with the real server's stubbed fields", () =>
    Effect.gen(function*() {
      const { call, token, write } = yield* setup()
      yield* write("a-1")
      yield* write("a-2")
      const list = (yield* call(["ns.list"])).body as Array<Record<string, unknown>>
      assert.deepStrictEqual(list.map((ns) => ns.namespace).sort(), ["default", "ns"])
      for (const ns of list) {
        assert.strictEqual(ns.messageCount, 0)
        assert.match(ns.createdAt as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
      }
      const info = yield* call(["ns.info", "ns"])
      assert.deepStrictEqual({ ...info.body, createdAt: "" }, {
        namespace: "ns",
        description: "",
        createdAt: "",
        messageCount: 2,
        streamCount: 0,
        lastActivity: null
      })
      expectError(yield* call(["ns.info", "missing"]), 404, "NAMESPACE_NOT_FOUND", "Namespace 'missing' not found")

      const deleted = yield* call(["ns.delete", "ns"], admin)
      assert.strictEqual(deleted.body.namespace, "ns")
      assert.strictEqual(deleted.body.messagesDeleted, 0)
      expectError(yield* call(["ns.delete", "ns"], admin), 404, "NAMESPACE_NOT_FOUND")
      expectError(yield* call(["stream.get", "a-1"], token), 403, "AUTH_UNAUTHORIZED")
    }))

  it.scoped("lists streams by LIKE prefix and cursor, and categories with counts", () =>
    Effect.gen(function*() {
      const { call, write } = yield* setup()
      for (let i = 0; i < 5; i++) yield* write(`acct-${i % 2}`)
      yield* write("order-1")
      yield* write("solo")
      yield* write("a_ct-9")
      const names = (reply: Reply) => (reply.body as Array<{ stream: string }>).map((s) => s.stream)
      const streams = yield* call(["ns.streams"])
      assert.deepStrictEqual(names(streams), ["a_ct-9", "acct-0", "acct-1", "order-1", "solo"])
      assert.strictEqual(streams.body[1].version, 2)
      assert.match(streams.body[1].lastActivity, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
      assert.deepStrictEqual(names(yield* call(["ns.streams", { prefix: "acct" }])), ["acct-0", "acct-1"])
      // `_` is a LIKE wildcard.
      assert.deepStrictEqual(names(yield* call(["ns.streams", { prefix: "a_ct" }])), ["a_ct-9", "acct-0", "acct-1"])
      assert.deepStrictEqual(names(yield* call(["ns.streams", { cursor: "acct-0", limit: 2 }])), ["acct-1", "order-1"])
      expectError(yield* call(["ns.streams", { limit: 0 }]), 400, "INVALID_REQUEST", "limit must be between 1 and 1000")
      expectError(
        yield* call(["ns.streams", { limit: 1001 }]),
        400,
        "INVALID_REQUEST",
        "limit must be between 1 and 1000"
      )
      assert.deepStrictEqual((yield* call(["ns.categories"])).body, [
        { category: "a_ct", streamCount: 1, messageCount: 1 },
        { category: "acct", streamCount: 2, messageCount: 5 },
        { category: "order", streamCount: 1, messageCount: 1 },
        { category: "solo", streamCount: 1, messageCount: 1 }
      ])
    }))

  it.scoped("answers system methods and envelope errors like the server", () =>
    Effect.gen(function*() {
      const { call } = yield* setup()
      assert.deepStrictEqual((yield* call(["sys.version"])).body, "0.7.0")
      assert.deepStrictEqual((yield* call(["sys.health"])).body, { status: "ok", backend: "unknown", connections: 0 })
      expectError(yield* call(["no.such", 1]), 404, "METHOD_NOT_FOUND", "Unknown method: no.such")
      expectError(yield* call("[]"), 400, "INVALID_REQUEST", "Missing method name")
      expectError(yield* call("null"), 400, "INVALID_REQUEST", "Missing method name")
      expectError(yield* call("[42]"), 400, "INVALID_REQUEST", "Method name must be a string")
      const truncated = yield* call("[\"sys.version\"")
      expectError(truncated, 400, "INVALID_REQUEST", "Malformed JSON request")
      assert.deepStrictEqual(truncated.body.error.details, { error: "unexpected end of JSON input" })
      const object = yield* call("{\"method\":\"sys.version\"}")
      assert.deepStrictEqual(object.body.error.details, {
        error: "json: cannot unmarshal object into Go value of type []interface {}"
      })
      expectError(yield* call(""), 400, "INVALID_REQUEST", "Malformed JSON request")
    }))
})

describe("in-memory store: authentication and routing", () => {
  it.scoped("authenticates before reading the body: query token first, then Bearer", () =>
    Effect.gen(function*() {
      const { request, token } = yield* setup()
      const garbage = { body: "not json" }
      expectError(yield* request(garbage), 401, "AUTH_REQUIRED", "Authorization header required")
      expectError(yield* request({ method: "GET" }), 401, "AUTH_REQUIRED")
      expectError(
        yield* request({ ...garbage, headers: { authorization: "Basic dXNlcjpwdw==" } }),
        401,
        "AUTH_REQUIRED",
        "Authorization header must use Bearer scheme"
      )
      const invalid = yield* request({ ...garbage, headers: { authorization: "Bearer not-a-token" } })
      expectError(invalid, 401, "AUTH_INVALID_TOKEN", "Invalid token format")
      assert.deepStrictEqual(invalid.body.error.details, { error: "invalid token format: missing 'ns_' prefix" })
      const missing = `ns_${Buffer.from("missing").toString("base64url")}_${"1".repeat(64)}`
      const unknown = yield* request({ ...garbage, headers: { authorization: `Bearer ${missing}` } })
      expectError(unknown, 403, "AUTH_UNAUTHORIZED", "Token not authorized for namespace")
      assert.deepStrictEqual(unknown.body.error.details, { namespace: "missing" })
      const wrong = `${token.slice(0, -64)}${"0".repeat(64)}`
      expectError(
        yield* request({ ...garbage, headers: { authorization: `Bearer ${wrong}` } }),
        403,
        "AUTH_UNAUTHORIZED"
      )

      // The query parameter wins over the header, on /rpc too.
      const ok = yield* request({
        url: `/rpc?token=${token}`,
        headers: { authorization: `Bearer ${wrong}` },
        body: "[\"sys.version\"]"
      })
      assert.strictEqual(ok.status, 200)
      expectError(
        yield* request({ url: `/rpc?token=${wrong}`, headers: { authorization: `Bearer ${token}` }, body: "[]" }),
        403,
        "AUTH_UNAUTHORIZED"
      )
      expectError(
        yield* request({ method: "GET", headers: { authorization: `Bearer ${token}` } }),
        405,
        "INVALID_REQUEST",
        "Only POST method allowed"
      )
    }))

  it.scoped("serves /health and /version without a token and 404 elsewhere", () =>
    Effect.gen(function*() {
      const { request } = yield* setup()
      const health = yield* request({ method: "GET", url: "/health" })
      assert.deepStrictEqual([health.status, health.body], [200, { status: "ok" }])
      const version = yield* request({ method: "GET", url: "/version" })
      assert.deepStrictEqual([version.status, version.body], [200, { version: "0.7.0" }])
      const nope = yield* request({ method: "GET", url: "/nope" })
      expectError(nope, 404, "NOT_FOUND", "Endpoint not found")
    }))
})

describe("in-memory store: subscriptions", () => {
  const decoder = new TextDecoder()

  it.scoped("drops pokes beyond a subscriber's 100-slot buffer", () =>
    Effect.gen(function*() {
      const { handler, store, token } = yield* setup()
      const response = yield* handler.handle({
        method: "GET",
        url: `/subscribe?stream=burst-1&token=${token}`,
        headers: {},
        body: ""
      })
      assert.strictEqual(response.status, 200)
      const pull = yield* Stream.toPull(
        Stream.map(response.body as Stream.Stream<Uint8Array>, (bytes) => decoder.decode(bytes))
      )
      const namespace = store.namespaces.get("ns")!
      const burst = (count: number) => {
        for (let i = 0; i < count; i++) {
          store.write(namespace, {
            streamName: "burst-1",
            type: "T",
            data: {},
            metadata: undefined,
            id: undefined,
            expectedVersion: undefined
          })
        }
      }
      const take = (count: number) =>
        Effect.gen(function*() {
          const positions: Array<number> = []
          while (positions.length < count) {
            for (const text of yield* pull) {
              for (const match of text.matchAll(/"position":(\d+)/g)) positions.push(Number(match[1]))
            }
          }
          return positions
        })

      // One synchronous burst of 150: the subscriber cannot read in between, so 50 pokes are dropped.
      burst(150)
      assert.deepStrictEqual(yield* take(100), Array.from({ length: 100 }, (_, i) => i))
      burst(1)
      assert.deepStrictEqual(yield* take(1), [150])
    }))
})

describe("EventoMemory.layer", () => {
  it.scoped("gives a client in namespace 'test' of a fresh store", () =>
    Effect.gen(function*() {
      const client = yield* EventoClient
      assert.strictEqual(client.namespace, "test")
      const written = yield* client.streamWrite("account-1", { type: "Opened", data: { n: 1 } })
      assert.deepStrictEqual(written, { position: 0, globalPosition: 1 })
      const [message] = yield* client.categoryGet("account")
      assert.strictEqual(message?.streamName, "account-1")
      assert.deepStrictEqual(message?.data, { n: 1 })
      assert.isTrue(Option.isNone(message!.metadata))
      assert.deepStrictEqual(yield* client.streamVersion("account-1"), Option.some(0))
      const conflict = yield* Effect.flip(
        client.streamWrite("account-1", { type: "Again", data: {} }, { expectedVersion: -1 })
      )
      assert.strictEqual(conflict._tag, "StreamVersionConflict")
    }).pipe(Effect.provide(EventoMemory.layer)))

  it.scoped("reaches other namespaces with withToken, and the admin namespace with the default token", () =>
    Effect.gen(function*() {
      const client = yield* EventoClient
      const created = yield* client.namespaceCreate("orders")
      const orders = yield* client.withToken(created.token)
      yield* orders.streamWrite("order-1", { type: "Placed", data: {} })
      assert.deepStrictEqual(yield* client.streamGet("order-1"), [])
      const adminClient = yield* client.withToken(admin)
      const names = (yield* adminClient.namespaceList).map((ns) => ns.namespace).sort()
      assert.deepStrictEqual(names, ["default", "orders", "test"])
      assert.strictEqual((yield* adminClient.namespaceInfo("orders")).messageCount, 1)
    }).pipe(Effect.provide(EventoMemory.layer)))

  it.scoped("delivers pokes over the in-process client: replay, then live writes", () =>
    Effect.gen(function*() {
      const client = yield* EventoClient
      yield* client.streamWrite("sub-1", { type: "T", data: {} })
      const pokes = yield* client.subscribe({ stream: "sub-1" }).pipe(Stream.take(3), Stream.runCollect, Effect.fork)
      yield* client.streamWrite("sub-1", { type: "T", data: {} })
      yield* client.streamWrite("sub-1", { type: "T", data: {} })
      const received = Chunk.toReadonlyArray(yield* Fiber.join(pokes))
      assert.deepStrictEqual(received.map((p) => p.position), [0, 1, 2])
      assert.deepStrictEqual(received.map((p) => p.stream), ["sub-1", "sub-1", "sub-1"])
    }).pipe(Effect.provide(EventoMemory.layer)))

  it.scoped("make uses the namespace and token it is given", () =>
    Effect.gen(function*() {
      const token = Token.generate("billing")
      const client = yield* EventoMemory.make({ namespace: "billing", token: Redacted.make(token) })
      assert.strictEqual(client.namespace, "billing")
      assert.deepStrictEqual(yield* client.streamWrite("invoice-1", { type: "T", data: {} }), {
        position: 0,
        globalPosition: 1
      })
    }))
})
