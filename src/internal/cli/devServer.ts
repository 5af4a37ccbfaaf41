/**
 * `eventodb-kit dev-server`: the in-process EventoDB-compatible server for local work without Docker or Go.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as EventoTestServer from "../../EventoTestServer.js"
import { defaultAdminToken } from "../memory/token.js"

const host = Options.text("host").pipe(
  Options.withDefault("127.0.0.1"),
  Options.withDescription("Interface to listen on")
)

const port = Options.integer("port").pipe(
  Options.withDefault(8080),
  Options.withDescription("TCP port; 0 picks a free one")
)

const token = Options.redacted("token").pipe(
  Options.optional,
  Options.withDescription(`Token of the 'default' namespace (the admin token); default ${defaultAdminToken}`)
)

/** Serves until interrupted (SIGINT or SIGTERM), then closes every subscription and connection. */
export const command = Command.make("dev-server", { host, port, token }, (options) =>
  Effect.gen(function*() {
    const server = yield* EventoTestServer.make({
      host: options.host,
      port: options.port,
      token: Option.getOrUndefined(options.token)
    })
    yield* Console.log(`listening on ${server.url}`)
    return yield* Effect.never
  }).pipe(Effect.scoped)).pipe(
    Command.withDescription("Run an in-memory EventoDB-compatible server (EventoDB 0.7.0 protocol)")
  )
