/*
 * The ipywidgets html-manager bundle typesets widget labels with the
 * MathJax 2 call MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]); the
 * book loads MathJax 3, which has no Hub, so each labelled widget threw a
 * TypeError.  This deferred script runs right after MathJax 3 has defined its
 * global (both are deferred, in document order) and forwards such calls to
 * MathJax 3's typesetPromise once MathJax has started.
 */
(function () {
  var mj = window.MathJax;
  if (!mj || mj.Hub || !mj.startup) {
    return;
  }
  mj.Hub = {
    Queue: function () {
      var elements = [];
      for (var i = 0; i < arguments.length; i++) {
        var job = arguments[i];
        if (Array.isArray(job) && job[0] === "Typeset" && job[2]) {
          elements.push(job[2]);
        }
      }
      if (elements.length === 0) {
        return;
      }
      mj.startup.promise.then(function () {
        return mj.typesetPromise(elements);
      });
    }
  };
})();
