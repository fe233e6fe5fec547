// Counts test cases in JUnit reports (Deno's and Bun's) and prints "N passed, N failed".
// Exits non-zero when a report is missing, holds no test, or has a failure.
import { readFileSync } from "node:fs";

let passed = 0, failed = 0, skipped = 0, problems = 0;
for (const file of process.argv.slice(2)) {
  let xml;
  try {
    xml = readFileSync(file, "utf8");
  } catch {
    console.log(`missing report ${file}`);
    problems++;
    continue;
  }
  let p = 0, f = 0, s = 0;
  for (const match of xml.matchAll(/<testcase\b[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g)) {
    const body = match[2] ?? "";
    if (/<(failure|error)\b/.test(body)) f++;
    else if (/<skipped\b/.test(body)) s++;
    else p++;
  }
  console.log(`${file}: ${p} passed, ${f} failed, ${s} skipped`);
  if (p + f === 0) problems++;
  passed += p, failed += f, skipped += s;
}
console.log(`${passed} passed, ${failed + problems} failed, ${skipped} skipped`);
process.exit(failed + problems > 0 ? 1 : 0);
