import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as EventoClient from "../src/EventoClient.js"
import type { EventoError } from "../src/EventoError.js"
import * as Protocol from "../src/internal/protocol.js"
import * as Token from "../src/internal/token.js"

const zeros = "0".repeat(64)
const defaultToken = `ns_ZGVmYXVsdA_${zeros}`

describe("token decoding", () => {
  it("decodes the plaintext namespace, not its base64 text (LESSONS 27)", () => {
    assert.deepStrictEqual(Token.decodeNamespace(defaultToken), Either.right("default"))
  })

  it("decodes non-ASCII namespaces as UTF-8, not Latin-1 (LESSONS 28)", () => {
    for (const namespace of ["café", "日本語", "zürich-ß", "emoji-🎉"]) {
      const token = Token.encode(namespace, "ab".repeat(32))
      if (token.split("_").length !== 3) continue // base64url with `_` cannot be parsed by anyone (PROTOCOL.md §4)
      assert.deepStrictEqual(Token.decodeNamespace(token), Either.right(namespace), namespace)
    }
    assert.deepStrictEqual(Token.decodeNamespace(`ns_Y2Fmw6k_${zeros}`), Either.right("café"))
  })

  it("accepts upper-case hex like the server's hex decoder", () => {
    assert.isTrue(Either.isRight(Token.decodeNamespace(`ns_ZGVmYXVsdA_${"AB".repeat(32)}`)))
  })

  it("refuses tokens the server cannot parse", () => {
    const bad = [
      "",
      "default",
      `ZGVmYXVsdA_${zeros}`,
      `ns_ZGVmYXVsdA${zeros}`,
      `ns_ZGVmYXVsdA_${zeros}_x`,
      `ns_ZGVmYXVsdA_${zeros.slice(1)}`,
      `ns_ZGVmYXVsdA_${"g".repeat(64)}`,
      `ns__${zeros}`,
      `ns_ZGV+YXVsdA_${zeros}`,
      `ns_ZGVmYXVsdA==_${zeros}`,
      `ns_wyg_${zeros}`, // bytes C3 28: not UTF-8
      `ns_ZGVmY_${zeros}` // a length no base64 has
    ]
    for (const token of bad) assert.isTrue(Either.isLeft(Token.decodeNamespace(token)), token)
  })
})

describe("time parsing", () => {
  it("parses a fraction of any length, or none", () => {
    const at = (text: string) => Option.map(Protocol.parseTime(text), (date) => date.toISOString())
    assert.deepStrictEqual(at("2024-01-15T10:30:00Z"), Option.some("2024-01-15T10:30:00.000Z"))
    assert.deepStrictEqual(at("2024-01-15T10:30:00.1Z"), Option.some("2024-01-15T10:30:00.100Z"))
    assert.deepStrictEqual(at("2024-01-15T10:30:00.123456Z"), Option.some("2024-01-15T10:30:00.123Z"))
    assert.deepStrictEqual(at("2024-01-15T10:30:00.123456789Z"), Option.some("2024-01-15T10:30:00.123Z"))
    assert.deepStrictEqual(at("2024-01-15T12:30:00.5+02:00"), Option.some("2024-01-15T10:30:00.500Z"))
    assert.isTrue(Option.isNone(Protocol.parseTime("2024-01-15 10:30:00")))
    assert.isTrue(Option.isNone(Protocol.parseTime("yesterday")))
  })
})

describe("error mapping", () => {
  const write = { method: "stream.write", stream: "account-1", expectedVersion: 1, id: "aaaa0001-1111-4222-8333-4444" }
  const body = (code: string, message: string, details?: object) =>
    JSON.stringify({ error: { code, message, details } })

  it("maps every server error code to its class", () => {
    const cases: Array<[number, string, string]> = [
      [401, "AUTH_REQUIRED", "EventoAuthError"],
      [401, "AUTH_INVALID_TOKEN", "EventoAuthError"],
      [403, "AUTH_UNAUTHORIZED", "EventoAuthError"],
      [404, "NAMESPACE_NOT_FOUND", "NamespaceNotFound"],
      [409, "NAMESPACE_EXISTS", "NamespaceExists"],
      [409, "STREAM_VERSION_CONFLICT", "StreamVersionConflict"],
      [400, "INVALID_REQUEST", "InvalidRequest"],
      [405, "INVALID_REQUEST", "InvalidRequest"],
      [404, "METHOD_NOT_FOUND", "MethodNotFound"],
      [500, "BACKEND_ERROR", "EventoServerError"],
      [500, "INTERNAL_ERROR", "EventoServerError"],
      [404, "NOT_FOUND", "EventoServerError"],
      [404, "STREAM_NOT_FOUND", "EventoServerError"]
    ]
    for (const [status, code, tag] of cases) {
      assert.strictEqual(Protocol.fromResponse(write, status, body(code, "m"))._tag, tag, code)
    }
  })

  it("gives the auth reason of each auth code", () => {
    const reason = (code: string) => {
      const error = Protocol.fromResponse(write, 401, body(code, "m"))
      return error._tag === "EventoAuthError" ? error.reason : error._tag
    }
    assert.strictEqual(reason("AUTH_REQUIRED"), "required")
    assert.strictEqual(reason("AUTH_INVALID_TOKEN"), "invalid-token")
    assert.strictEqual(reason("AUTH_UNAUTHORIZED"), "unauthorized")
  })

  it("reads the actual version from details when the backend sends it", () => {
    const withDetails = Protocol.fromResponse(
      write,
      409,
      body("STREAM_VERSION_CONFLICT", "Expected version 1, stream is at version 3", { expected: 1, actual: 3 })
    )
    assert.strictEqual(withDetails._tag, "StreamVersionConflict")
    if (withDetails._tag !== "StreamVersionConflict") return
    assert.strictEqual(withDetails.stream, "account-1")
    assert.strictEqual(withDetails.expectedVersion, 1)
    assert.deepStrictEqual(withDetails.actualVersion, Option.some(3))
    const without = Protocol.fromResponse(write, 409, body("STREAM_VERSION_CONFLICT", "version conflict"))
    assert.deepStrictEqual(without._tag === "StreamVersionConflict" && without.actualVersion, Option.none())
  })

  it("recognises the duplicate-id answers of Postgres and SQLite, naming the id sent", () => {
    const postgres = "Failed to write message: failed to write message: ERROR: duplicate key value violates unique " +
      "constraint \"messages_id\" (SQLSTATE 23505)"
    const sqlite = "Failed to write message: UNIQUE constraint failed: messages.id"
    for (const message of [postgres, sqlite]) {
      const error = Protocol.fromResponse(write, 500, body("BACKEND_ERROR", message))
      assert.strictEqual(error._tag, "DuplicateMessageId")
      assert.strictEqual(error._tag === "DuplicateMessageId" && error.id, write.id)
    }
    const other = Protocol.fromResponse(write, 500, body("BACKEND_ERROR", "invalid UUID format"))
    assert.deepStrictEqual(other._tag === "EventoServerError" && [other.status, other.code], [500, "BACKEND_ERROR"])
  })

  it("turns a 5xx page that is not JSON into a server error and a 4xx one into a protocol error", () => {
    const page = "<html><body>502 Bad Gateway</body></html>"
    const fivexx = Protocol.fromResponse(write, 502, page)
    assert.deepStrictEqual(fivexx._tag === "EventoServerError" && [fivexx.status, fivexx.code], [502, "UNKNOWN"])
    assert.include(fivexx.message, "502 Bad Gateway")
    const fourxx = Protocol.fromResponse(write, 418, page)
    assert.strictEqual(fourxx._tag, "EventoProtocolError")
    assert.include(fourxx.message, "502 Bad Gateway")
  })

  it("says what was expected and shows what came when a result does not decode", () => {
    const garbage = Protocol.decodeResult(write, Protocol.WriteResult, "a write result", "<html>oops</html>")
    assert.isTrue(Either.isLeft(garbage))
    if (Either.isLeft(garbage)) {
      assert.include(garbage.left.message, "expected JSON (a write result)")
      assert.include(garbage.left.message, "<html>oops</html>")
    }
    const shape = Protocol.decodeResult(write, Protocol.WriteResult, "a write result", "{\"position\":\"x\"}")
    assert.isTrue(Either.isLeft(shape))
    if (Either.isLeft(shape)) assert.include(shape.left.message, "expected a write result")
    const long = Protocol.excerpt("x".repeat(1000))
    assert.isBelow(long.length, 200)
  })
})

/** A client over an HttpClient that records each request body and answers `answer`. */
const recording = (answer: string) =>
  Effect.gen(function*() {
    const bodies: Array<unknown> = []
    const http = HttpClient.make((request) =>
      Effect.sync(() => {
        if (request.body._tag === "Uint8Array") bodies.push(JSON.parse(new TextDecoder().decode(request.body.body)))
        return HttpClientResponse.fromWeb(request, new Response(answer, { status: 200 }))
      })
    )
    const client = yield* EventoClient.make({ url: "http://127.0.0.1:1/", token: defaultToken }).pipe(
      Effect.provideService(HttpClient.HttpClient, http)
    )
    return { client, bodies }
  })

describe("request encoding", () => {
  it.effect("sends no undefined or null keys, and no options object when none is set", () =>
    Effect.gen(function*() {
      const { bodies, client } = yield* recording("{\"position\":0,\"globalPosition\":1}")
      yield* client.streamWrite("account-1", { type: "Opened", data: { a: 1 } })
      yield* client.streamWrite("account-1", { type: "Opened", data: {}, metadata: undefined }, {
        id: undefined,
        expectedVersion: undefined
      })
      // Plain JavaScript callers can pass nulls; they mean "not set".
      const loose: EventoClient.NewMessage = JSON.parse("{\"type\":\"T\",\"data\":{},\"metadata\":null}")
      const looseOptions: EventoClient.WriteOptions = JSON.parse("{\"id\":null,\"expectedVersion\":3}")
      yield* client.streamWrite("account-1", loose, looseOptions)
      assert.deepStrictEqual(bodies, [
        ["stream.write", "account-1", { type: "Opened", data: { a: 1 } }],
        ["stream.write", "account-1", { type: "Opened", data: {} }],
        ["stream.write", "account-1", { type: "T", data: {} }, { expectedVersion: 3 }]
      ])
    }))

  it.effect("puts ns.streams options first and sends category options as given", () =>
    Effect.gen(function*() {
      const { bodies, client } = yield* recording("[]")
      yield* client.namespaceStreams({ prefix: "acct", limit: 2 })
      yield* client.namespaceStreams()
      yield* client.categoryGet("", { consumerGroup: { member: 0, size: 2 }, correlation: undefined })
      yield* client.streamGet("a-1", { position: 5, batchSize: undefined })
      assert.deepStrictEqual(bodies, [
        ["ns.streams", { prefix: "acct", limit: 2 }],
        ["ns.streams"],
        ["category.get", "", { consumerGroup: { member: 0, size: 2 } }],
        ["stream.get", "a-1", { position: 5 }]
      ])
    }))

  it.effect("refuses bad arguments with InvalidRequest before sending anything (ERROR-002/003)", () =>
    Effect.gen(function*() {
      const { bodies, client } = yield* recording("{\"position\":0,\"globalPosition\":1}")
      const untyped = (json: string): never => JSON.parse(json) as never
      const attempts: Array<Effect.Effect<unknown, EventoError>> = [
        client.streamWrite("", { type: "T", data: {} }),
        client.streamWrite(untyped("42"), { type: "T", data: {} }),
        client.streamWrite("a-1", untyped("null")),
        client.streamWrite("a-1", untyped("{\"type\":\"T\"}")),
        client.streamWrite("a-1", untyped("{\"type\":\"T\",\"data\":[1]}")),
        client.streamWrite("a-1", untyped("{\"type\":\"\",\"data\":{}}")),
        client.streamWrite("a-1", untyped("{\"type\":\"T\",\"data\":{},\"metadata\":[]}")),
        client.streamWrite("a-1", { type: "T", data: {} }, untyped("{\"expectedVersion\":\"1\"}")),
        client.streamWrite("a-1", { type: "T", data: { big: 1n } }),
        client.streamGet(untyped("7")),
        client.streamGet("a-1", untyped("{\"position\":\"5\"}")),
        client.categoryGet(untyped("null")),
        client.categoryGet("c", untyped("{\"consumerGroup\":{\"member\":0}}")),
        client.namespaceCreate(""),
        client.namespaceDelete(untyped("1"))
      ]
      for (const attempt of attempts) {
        const exit = yield* Effect.exit(attempt)
        assert.isTrue(Exit.isFailure(exit))
        assert.deepStrictEqual(
          Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag,
          "InvalidRequest"
        )
      }
      const badTarget = yield* Stream.runCollect(client.subscribe({ stream: "" })).pipe(Effect.flip)
      assert.strictEqual(badTarget._tag, "InvalidRequest")
      assert.deepStrictEqual(bodies, [])
    }))

  it.effect("fills streamName from the request and decodes metadata null as none", () =>
    Effect.gen(function*() {
      const rows = [
        ["0190a1b2-0000-7000-8000-000000000001", "Opened", 0, 1, {}, null, "2024-01-15T10:30:00Z"],
        ["0190a1b2-0000-7000-8000-000000000002", "Noted", 1, 3, { n: 1 }, { by: "x" }, "2024-01-15T10:30:00.25Z"]
      ]
      const { client } = yield* recording(JSON.stringify(rows))
      const messages = yield* client.streamGet("account-9")
      assert.deepStrictEqual(messages.map((m) => [m.streamName, m.position, m.globalPosition, m.metadata]), [
        ["account-9", 0, 1, Option.none()],
        ["account-9", 1, 3, Option.some({ by: "x" })]
      ])
      assert.strictEqual(messages[1]?.time.toISOString(), "2024-01-15T10:30:00.250Z")
    }))
})

describe("construction", () => {
  it.effect("refuses a token that does not parse with EventoAuthError invalid-token", () =>
    Effect.gen(function*() {
      const http = HttpClient.make((request) => Effect.die(`no request expected: ${request.url}`))
      const error = yield* EventoClient.make({ url: "http://127.0.0.1:1", token: "not-a-token" }).pipe(
        Effect.provideService(HttpClient.HttpClient, http),
        Effect.flip
      )
      assert.deepStrictEqual(error._tag === "EventoAuthError" && error.reason, "invalid-token")
      const client = yield* EventoClient.make({ url: "http://127.0.0.1:1", token: Redacted.make(defaultToken) }).pipe(
        Effect.provideService(HttpClient.HttpClient, http)
      )
      assert.strictEqual(client.namespace, "default")
      const other = yield* client.withToken(Token.encode("tenant-ä", zeros))
      assert.strictEqual(other.namespace, "tenant-ä")
      assert.strictEqual((yield* Effect.flip(client.withToken("ns_x"))).reason, "invalid-token")
    }))

  it.effect("layerConfig reads EVENTODB_URL, EVENTODB_TOKEN and EVENTODB_TIMEOUT", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const http = HttpClient.make((request) =>
        Effect.sync(() => {
          seen.push(request.url)
          return HttpClientResponse.fromWeb(request, new Response("\"0.7.0\"", { status: 200 }))
        })
      )
      const provider = ConfigProvider.fromMap(
        new Map([["EVENTODB_URL", "http://127.0.0.1:9/"], ["EVENTODB_TOKEN", defaultToken], [
          "EVENTODB_TIMEOUT",
          "2 seconds"
        ]])
      )
      const layer = EventoClient.layerConfig().pipe(
        Layer.provide(Layer.succeed(HttpClient.HttpClient, http)),
        Layer.provide(Layer.setConfigProvider(provider))
      )
      const version = yield* EventoClient.systemVersion.pipe(Effect.provide(layer))
      assert.strictEqual(version, "0.7.0")
      assert.deepStrictEqual(seen, ["http://127.0.0.1:9/rpc"])
      const missing = yield* Layer.build(
        EventoClient.layerConfig().pipe(
          Layer.provide(Layer.succeed(HttpClient.HttpClient, http)),
          Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map())))
        )
      ).pipe(Effect.scoped, Effect.flip)
      assert.notStrictEqual(missing._tag, "EventoAuthError")
      assert.include(String(missing), "EVENTODB_TOKEN")
    }))
})
