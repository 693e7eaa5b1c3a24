/** Where a CLI command reads its directory and writes its output (injectable for tests). */
export interface CliIO {
  cwd: string;
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}
