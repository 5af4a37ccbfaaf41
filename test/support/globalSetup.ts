/**
 * Starts one PostgreSQL for the whole run unless `DATABASE_URL` names one, and hands its URL to the test files.
 * The embedded server runs in a child process (scripts/embedded-postgres.mjs) that stops it when we go away.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createInterface } from "node:readline"
import type { TestProject } from "vitest/node"

declare module "vitest" {
  export interface ProvidedContext {
    databaseUrl: string
  }
}

const startEmbedded = (): Promise<{ child: ChildProcess; url: string }> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["scripts/embedded-postgres.mjs"], { stdio: ["pipe", "pipe", "inherit"] })
    const lines = createInterface({ input: child.stdout! })
    lines.on("line", (line) => {
      if (line.startsWith("ready ")) resolve({ child, url: line.slice("ready ".length) })
    })
    child.once("exit", (code) => reject(new Error(`embedded PostgreSQL exited with code ${code}`)))
  })

export default async function setup(project: TestProject) {
  const configured = process.env.DATABASE_URL
  if (configured) {
    project.provide("databaseUrl", configured)
    return
  }
  const { child, url } = await startEmbedded()
  project.provide("databaseUrl", url)
  return async () => {
    const exited = new Promise((resolve) => child.once("exit", resolve))
    child.stdin?.end()
    await exited
  }
}
