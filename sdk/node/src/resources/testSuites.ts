/** `client.testSuites`: the prompt sets (with expected answers) that batch tests run. */
import { pathSegment, type RequestOptions, type Transport } from "../http.js";
import type {
  TestSuite,
  TestSuiteCreate,
  TestSuiteDeleted,
  TestSuiteItemIn,
  TestSuitesList,
  TestSuiteUploadQuery,
} from "../types.js";
import { type AllKeys, requestOptions, setFields } from "./_shared.js";

const PREFIX = "/api/test-suites";

export interface CreateTestSuiteOptions extends RequestOptions {
  name: string;
  /** `{prompt}` or `{messages}`, each with an optional `expected` answer (1..10,000 items). */
  items: readonly TestSuiteItemIn[];
  description?: string | null;
}

export interface UploadTestSuiteOptions extends RequestOptions {
  name: string;
  description?: string | null;
  /** A JSON array or JSONL text (prompt/completion, input/output or chat records). */
  content: string | Uint8Array;
}

export class TestSuites {
  constructor(private readonly transport: Transport) {}

  create(options: CreateTestSuiteOptions): Promise<TestSuite> {
    const body: AllKeys<TestSuiteCreate> = {
      name: options.name,
      items: [...options.items],
      description: options.description,
    };
    return this.transport.json(
      { method: "POST", path: PREFIX, json: setFields(body) },
      requestOptions(options),
    );
  }

  /** A suite from a file's content: a JSON array or JSONL. */
  upload(options: UploadTestSuiteOptions): Promise<TestSuite> {
    const query: AllKeys<TestSuiteUploadQuery> = {
      name: options.name,
      description: options.description,
    };
    return this.transport.json(
      { method: "POST", path: `${PREFIX}/upload`, query, body: options.content },
      requestOptions(options),
    );
  }

  list(options?: RequestOptions): Promise<TestSuitesList> {
    return this.transport.json({ method: "GET", path: PREFIX }, requestOptions(options));
  }

  /** One suite, with its items. */
  get(suiteId: string, options?: RequestOptions): Promise<TestSuite> {
    return this.transport.json(
      { method: "GET", path: `${PREFIX}/${pathSegment(suiteId)}` },
      requestOptions(options),
    );
  }

  delete(suiteId: string, options?: RequestOptions): Promise<TestSuiteDeleted> {
    return this.transport.json(
      { method: "DELETE", path: `${PREFIX}/${pathSegment(suiteId)}` },
      requestOptions(options),
    );
  }
}
