// The package is "type": "module"; dist/cjs needs its own package.json saying it is CommonJS.
import { writeFileSync } from "node:fs";

for (const [dir, type] of [["esm", "module"], ["cjs", "commonjs"]]) {
  writeFileSync(new URL(`../dist/${dir}/package.json`, import.meta.url), `{"type": "${type}"}\n`);
}
