// The CommonJS entry's .d.ts resolves too (require condition → dist/cjs/index.d.ts).
import sdk = require("@finetune-lab/sdk");

const client: sdk.FinetuneLabClient = new sdk.FinetuneLabClient({ apiKey: "k" });
const pages: Promise<sdk.PredictionsPage> = client.trainingPredictions.get("job");
const error: sdk.FinetuneLabError = new sdk.APITimeoutError("t");
void [pages, error];
