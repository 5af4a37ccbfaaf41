/**
 * `npm run bench -- [NAME...]`: runs `bench/<NAME>.ts` for each name given, or every bench when none is, each in a
 * process of its own (so one bench's servers and pools cannot slow the next), one after the other. Their stdout and
 * stderr pass through untouched, so each bench's JSON line stays the last stdout line of its own run. Exits non-zero
 * when any bench does.
 */
import { spawn } from "node:child_process"
import { readdirSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))
const notBenches = new Set(["run", "support"])

const available = readdirSync(here)
  .filter((file) => file.endsWith(".ts") && !file.endsWith(".d.ts"))
  .map((file) => file.slice(0, -".ts".length))
  .filter((name) => !notBenches.has(name))
  .sort()

const requested = process.argv.slice(2).filter((arg) => arg.length > 0)
const unknown = requested.filter((name) => !available.includes(name))
if (unknown.length > 0) {
  console.error(`unknown bench: ${unknown.join(", ")} (available: ${available.join(", ")})`)
  process.exit(2)
}

const runOne = (name: string): Promise<number> =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(here, `${name}.ts`)], { stdio: "inherit" })
    const forward = (signal: NodeJS.Signals) => () => child.kill(signal)
    process.once("SIGINT", forward("SIGINT"))
    process.once("SIGTERM", forward("SIGTERM"))
    child.once("error", (error) => {
      console.error(`bench ${name} could not start: ${error.message}`)
      resolve(1)
    })
    child.once("exit", (code, signal) => resolve(code ?? (signal === null ? 1 : 128)))
  })

let failed = 0
for (const name of requested.length > 0 ? requested : available) {
  console.error(`--- bench ${name}`)
  const code = await runOne(name)
  if (code !== 0) {
    console.error(`--- bench ${name} failed with exit code ${code}`)
    failed++
  }
}
process.exit(failed === 0 ? 0 : 1)
