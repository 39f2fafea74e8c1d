/* The Billing page with Stripe: Stripe.js (loaded before this file) collects the card and
   confirms the SetupIntent; then the form posts its id to Fizy. A file, not an inline script
   (Content-Security-Policy). */
(function () {
  "use strict";
  function fizyMountCardForm(root) {
    const form = root.querySelector ? root.querySelector("#stripe-card-form") : null;
    if (!form || form.dataset.mounted || typeof Stripe === "undefined") return;
    form.dataset.mounted = "1";
    const stripe = Stripe(form.dataset.publishableKey);
    const card = stripe.elements().create("card");
    card.mount(form.querySelector("#card-element"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector("button");
      button.disabled = true;
      const { setupIntent, error } = await stripe.confirmCardSetup(form.dataset.clientSecret, { payment_method: { card } });
      if (error) {
        form.querySelector("#card-errors").textContent = error.message;
        button.disabled = false;
        return;
      }
      form.querySelector("[name=setup_intent_id]").value = setupIntent.id;
      form.submit();
    });
  }
  fizyMountCardForm(document);
  document.body.addEventListener("htmx:afterSwap", (event) => fizyMountCardForm(document));
})();
