// The environment variables the server reads, from the configuration table: what docs and deploy files must match.
import { VARIABLES } from '../../src/config/table.js';

export function configVariables(): Set<string> {
  return new Set(Object.keys(VARIABLES));
}
