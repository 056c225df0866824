import js from "@eslint/js";
import tseslint from "typescript-eslint";

// Lint what the type checker cannot see: unused code, floating promises in the bridge
// (a lost rejection is a lost message), and imports of I/O into pure code.
export default tseslint.config(
  // TypeScript only: the few .mjs/.js build and bench scripts are not part of the product.
  { ignores: ["dist/", "node_modules/", "bench/results/", "**/*.js", "**/*.mjs"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", destructuredArrayIgnorePattern: "^_" }],
      "@typescript-eslint/no-explicit-any": "off",
    },
  },
  {
    // Pure translation code: no I/O, no clock, no randomness (STYLE.md).
    files: ["stanza-mappers/**/*.ts"],
    rules: {
      "no-restricted-imports": ["error", { patterns: ["node:*", "ws", "ioredis", "@xmpp/component", "@xmpp/client", "pino", "../bridge/*"] }],
      "no-restricted-properties": [
        "error",
        { object: "Date", property: "now", message: "pass the time in" },
        { object: "Math", property: "random", message: "pass randomness in" },
      ],
    },
  },
);
