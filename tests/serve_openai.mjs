// serve_openai.mjs URL KEY OPENAI_MODULE — the official openai client against spikeq serve:
// a streamed chat completion, a plain completion, and a refused request surfacing as the
// client's BadRequestError with the server's message. Exits non-zero on any mismatch.
const [url, key, mod] = process.argv.slice(2);
const { default: OpenAI } = await import(mod);
const client = new OpenAI({ baseURL: url + "/v1", apiKey: key });
const fail = (m) => { console.error("openai client: " + m); process.exit(1); };

const models = await client.models.list();
const model = models.data[0].id;

const stream = await client.chat.completions.create({
  model, stream: true, max_tokens: 12, temperature: 0,
  messages: [{ role: "system", content: "You answer questions about Linux." }, { role: "user", content: "What is a kernel module?" }],
});
let text = "", chunks = 0, finish = null;
for await (const chunk of stream) {
  chunks++;
  text += chunk.choices[0]?.delta?.content ?? "";
  finish = chunk.choices[0]?.finish_reason ?? finish;
}
if (chunks < 3 || !text.length || finish !== "length") fail(`stream: ${chunks} chunks, finish ${finish}, text ${JSON.stringify(text)}`);

const c = await client.completions.create({ model, prompt: "The Linux kernel", max_tokens: 8, temperature: 0 });
if (c.choices[0].finish_reason !== "length" || c.usage.completion_tokens !== 8 || !c.choices[0].text.length)
  fail("completion: " + JSON.stringify(c));

try {
  await client.completions.create({ model, prompt: "x", max_tokens: 0 });
  fail("max_tokens 0 was accepted");
} catch (e) {
  if (!(e instanceof OpenAI.BadRequestError) || !/max_tokens/.test(e.message)) fail("error: " + e);
}
console.log(`openai client: streamed ${chunks} chunks: ${JSON.stringify(text)}`);
