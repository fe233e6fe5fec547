interface RuntimeGlobals {
  Deno?: { env: { get(name: string): string | undefined } };
  process?: { env: Record<string, string | undefined> };
}

/** An environment variable under Deno or Bun; undefined when unset or not permitted. */
export function readEnv(name: string): string | undefined {
  const runtime = globalThis as RuntimeGlobals;
  try {
    return runtime.Deno ? runtime.Deno.env.get(name) : runtime.process?.env[name];
  } catch {
    return undefined; // Deno without --allow-env
  }
}
