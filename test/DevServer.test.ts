/**
 * `eventodb-kit dev-server` as a separate OS process (src/bin.ts through tsx, so the test does not depend on a
 * fresh build): it prints where it listens, serves the protocol with its `default` token, and exits 0 on SIGINT
 * or SIGTERM after closing its subscriptions; bad options exit 1.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Token from "../src/internal/memory/token.js"
import * as Processes from "./support/Processes.js"

const listening = /^listening on (http:\/\/127\.0\.0\.1:(\d+))$/

const devServer = (...args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const child = yield* Processes.spawnTs("src/bin.ts", { args: ["dev-server", ...args] })
    const line = yield* child.waitForLine((line) => listening.test(line), "60 seconds").pipe(Effect.orDie)
    const [, url, port] = listening.exec(line)!
    return { child, url: url!, port: Number(port) }
  })

const rpc = (url: string, token: string, body: unknown) =>
  Effect.promise(() =>
    fetch(`${url}/rpc`, { method: "POST", headers: { authorization: `Bearer ${token}` }, body: JSON.stringify(body) })
      .then(async (response) => ({ status: response.status, body: await response.json() }))
  )

describe("eventodb-kit dev-server", () => {
  it.scopedLive(
    "listens on a free port with --port 0, serves the default token, and exits 0 on SIGTERM",
    () =>
      Effect.gen(function*() {
        const { child, port, url } = yield* devServer("--port", "0")
        assert.isAbove(port, 0)
        assert.deepStrictEqual(yield* rpc(url, Token.defaultAdminToken, ["sys.version"]), {
          status: 200,
          body: "0.7.0"
        })
        const created = yield* rpc(url, Token.defaultAdminToken, ["ns.create", "dev"])
        assert.strictEqual(created.status, 200)
        assert.deepStrictEqual(
          yield* rpc(url, (created.body as { token: string }).token, ["stream.write", "a-1", { type: "T", data: {} }]),
          {
            status: 200,
            body: { globalPosition: 1, position: 0 }
          }
        )

        // A second server on the same port cannot listen: it says so and exits 1.
        const second = yield* Processes.spawnTs("src/bin.ts", { args: ["dev-server", "--port", String(port)] })
        assert.strictEqual((yield* second.exited).code, 1)
        assert.match((yield* second.stderr).join("\n"), /cannot listen/)

        yield* child.kill("SIGTERM")
        assert.deepStrictEqual(yield* child.exited, { code: 0, signal: null })
      }),
    { timeout: 120_000 }
  )

  it.scopedLive("exits 0 on SIGINT, ending open subscriptions", () =>
    Effect.gen(function*() {
      const { child, url } = yield* devServer("--host", "127.0.0.1", "--port", "0")
      const response = yield* Effect.promise(() => fetch(`${url}/subscribe?all=true&token=${Token.defaultAdminToken}`))
      const reader = response.body!.getReader()
      assert.strictEqual(new TextDecoder().decode((yield* Effect.promise(() => reader.read())).value), ": ready\n\n")
      const ended = Effect.promise(() => reader.read())
      yield* child.kill("SIGINT")
      assert.isTrue((yield* ended).done)
      assert.deepStrictEqual(yield* child.exited, { code: 0, signal: null })
    }), { timeout: 120_000 })

  it.scopedLive("uses the token given with --token for the default namespace", () =>
    Effect.gen(function*() {
      const token = Token.generate("default")
      const { url } = yield* devServer("--port", "0", "--token", token)
      assert.strictEqual((yield* rpc(url, token, ["ns.list"])).status, 200)
      assert.strictEqual((yield* rpc(url, Token.defaultAdminToken, ["ns.list"])).status, 403)
    }), { timeout: 120_000 })

  it.scopedLive("refuses a token of another namespace with exit code 1", () =>
    Effect.gen(function*() {
      const child = yield* Processes.spawnTs("src/bin.ts", {
        args: ["dev-server", "--port", "0", "--token", Token.generate("other")]
      })
      assert.strictEqual((yield* child.exited).code, 1)
      assert.match((yield* child.stderr).join("\n"), /not for namespace 'default'/)
      assert.deepStrictEqual(yield* child.stdout, [])
    }), { timeout: 120_000 })
})
