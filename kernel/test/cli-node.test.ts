import { describe, expect, it } from 'vitest';
import { nodeWarning } from '../src/cli/node-check.js';

describe('the Node version every command runs on', () => {
  it('warns once, naming the version, the range @mega/kernel needs and mega doctor, when Node is too old', () => {
    const line = nodeWarning('20.20.2');
    expect(line).toBe(
      'mega: warning: Node v20.20.2 does not satisfy >=22, which @mega/kernel needs: built-in modules may be missing (node:sqlite); install a newer Node, and see mega doctor',
    );
    expect(nodeWarning(process.versions.node)).toBeUndefined();
    expect(nodeWarning('24.0.0')).toBeUndefined();
  });
});
