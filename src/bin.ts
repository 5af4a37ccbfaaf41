#!/usr/bin/env node
/**
 * The `eventodb-kit` command line. Each subcommand lives in `internal/cli/<name>.ts` and is listed below.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Cleanup from "./internal/cli/cleanup.js"
import * as Consumer from "./internal/cli/consumer.js"
import * as DevServer from "./internal/cli/devServer.js"
import * as Migrate from "./internal/cli/migrate.js"
import * as Outbox from "./internal/cli/outbox.js"
import * as Status from "./internal/cli/status.js"

const subcommands = [
  DevServer.command,
  Migrate.command,
  Status.command,
  Outbox.command,
  Consumer.command,
  Cleanup.command
] as const

const cli = Command.make("eventodb-kit").pipe(
  Command.withDescription("eventodb-kit: tools for EventoDB applications"),
  Command.withSubcommands(subcommands)
)

// The CLI prints its own usage errors; anything else is reported once, readably, and exits 1.
const report = (cause: Cause.Cause<unknown>): Effect.Effect<void> => {
  if (Cause.isInterruptedOnly(cause)) return Effect.void
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some" && ValidationError.isValidationError(failure.value)) return Effect.void
  const error = failure._tag === "Some" ? failure.value : undefined
  const message = typeof error === "object" && error !== null && "message" in error ?
    String(error.message) :
    Cause.pretty(cause)
  return Console.error(`eventodb-kit: ${message}`)
}

Command.run(cli, { name: "eventodb-kit", version: "0.1.0" })(process.argv).pipe(
  Effect.tapErrorCause(report),
  Effect.provide(NodeContext.layer),
  (program) => NodeRuntime.runMain(program, { disableErrorReporting: true })
)
